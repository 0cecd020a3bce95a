"""``medseg plan``: fingerprint, rules, calibration and budget, written as a pipeline file.

Candidates run from the finest resolution and largest network down (:mod:`medseg.plan.budget`);
each network is measured once on the device and the others predicted from it, the chosen one
measured again to confirm. A budget no candidate fits is answered with the smallest budget that
would, and the plan it would give. The plan is a :class:`~medseg.config.models.PipelineConfig`
built section by section (:mod:`medseg.plan.sections`), written with a reason beside each value,
its fingerprint beside it as ``<name>.fingerprint.json`` (so two plans in one folder keep theirs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.io.atomic import write_text
from medseg.plan import budget as B
from medseg.plan import rules
from medseg.plan.fingerprint import detect_workflow, fingerprint
from medseg.plan.sections import VAL_FRACTION, Candidate, folds, n_classes, planned_config
from medseg.plan.write import to_yaml

log = logging.getLogger(__name__)
MIN_STAGES = 3  # DynUNet's least: two poolings
REF_VOXELS = {2: 65_536, 3: 1_000_000}  # a network is measured at the first scale with a patch this small
DAY = 86_400.0


def _geometry(fp: dict[str, Any]) -> tuple[list[float], list[float], str]:
    """(target spacing, median shape at that spacing, reason) of the fingerprint."""
    spacings = [c["spacing"] for c in fp["cases"]]
    shapes = [c["shape"] for c in fp["cases"]]
    if fp["spatial_dims"] == 2:
        return [1.0, 1.0], list(np.median(np.asarray(shapes, float), 0)), "2D: the pixel grid of the pictures"
    target, reason = rules.target_spacing(spacings, shapes)
    resampled = [
        np.asarray(s) * np.asarray(p) / np.asarray(target) for s, p in zip(shapes, spacings, strict=True)
    ]
    return target, list(np.median(np.asarray(resampled), 0)), reason


def _candidate(fp: dict[str, Any], scale: float, network: str, base: int, memory_gb: float) -> Candidate:
    spacing, shape, _ = _geometry(fp)
    if fp["spatial_dims"] == 3:
        spacing = [s / scale for s in spacing]
    shape = [max(8.0, s * scale) for s in shape]
    voxels = float(np.prod(shape)) * fp["n_cases"]
    grid = [1.0] * len(shape) if fp["spatial_dims"] == 2 else spacing
    planned = rules.patch_and_batch(grid, shape, fp["channels"], n_classes(fp), memory_gb, voxels, base)
    return Candidate(scale, network, base, spacing, shape, planned)


def candidates(fp: dict[str, Any], memory_gb: float, budget: float | None) -> list[Candidate]:
    """Every candidate from the finest and largest down (only the first without a budget).

    Raises:
        MedsegError: the data is too small for a U-Net of three levels.
    """
    nets = B.NETWORKS if budget else B.NETWORKS[:1]
    scales = B.SCALES if budget else (1.0,)
    cands = [_candidate(fp, s, n, b, memory_gb) for s in scales for n, b in nets]
    cands = [c for c in cands if c.planned["topology"].n_stages >= MIN_STAGES]
    if not cands:
        raise MedsegError(
            f"{fp['root']}: median shape {[round(s) for s in fp['median_shape']]} is too small for a U-Net "
            "of "
            f"{MIN_STAGES} levels (at least {4 * rules.MIN_EDGE} voxels per axis); write the pipeline by hand"
        )
    return cands


def bound(cfg: PipelineConfig, out: Path, calibration: bool = False) -> PipelineConfig:
    """A planned config as ``medseg run`` would load it: paths resolved against the plan's folder,
    components bound (for calibration: no tracking, no fingerprint)."""
    from medseg.config.load import bind_components, validate_dict

    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["data"]["root"] = str((out.parent / raw["data"]["root"]).resolve())
    raw["output_dir"] = str((out.parent / raw["output_dir"]).resolve())
    raw.pop("fingerprint", None)
    if calibration:
        raw["tracking"] = {"enabled": False}
    return bind_components(validate_dict(raw, str(out)))


def _measure(
    fp: dict[str, Any],
    cand: Candidate,
    out: Path,
    device: str,
    cases: list[Any],
    options: dict[str, Any] | None = None,
    budget: float | None = None,
) -> Any:
    """Measure ``cand``: with the step ``options`` chosen earlier, or trying them (None) where a
    study of it could fit ``budget``."""
    from medseg.plan.calibrate import measure

    planned = planned_config(fp, cand, "calibration", out, device)[0]
    if options:
        planned = planned.model_copy(update={"train": planned.train.model_copy(update=options)})
    cfg = bound(planned, out, calibration=True)
    patch = list(cand.planned["topology"].patch)
    log.info(
        "calibrating %s (%d base features) at scale %g, patch %s, batch %d",
        cand.network, cand.base, cand.scale, patch, cand.planned["batch_size"],
    )  # fmt: skip
    return measure(cfg, cases, try_options=options is None, budget=budget)


def _workload(cand: Candidate, measured: Any, ref: Candidate | None, fp: dict[str, Any]) -> B.Workload:
    """The study's workload from a measurement of ``cand`` itself or (``ref`` given) of another
    candidate scaled by feature-map voxels."""
    ratio = 1.0 if ref is None else cand.work / ref.work
    per_case = 1.0 if ref is None else cand.planned["feature_map_voxels"] / ref.planned["feature_map_voxels"]
    return B.Workload(
        fp["n_cases"],
        folds(fp),
        cand.planned["batch_size"],
        rules.cases_per_step(cand.planned["batch_size"])[1] if fp["spatial_dims"] == 3 else 1,
        measured.seconds_per_step * ratio,
        measured.seconds_per_val_case * per_case,
        measured.seconds_per_load,
        VAL_FRACTION,
        members=_members(cand, fp["spatial_dims"]),
    )


def _members(cand: Candidate, dims: int) -> float:
    """Inference passes per held-out case, in prediction windows: 2D averages the 4 flips of a
    picture (``infer.tta_flips``), 3D predicts once and flips each axis for the uncertainty score."""
    if dims == 2:
        return 4.0
    return 1 + dims * _score_share(cand)


def _score_share(cand: Candidate) -> float:
    """Windows of a flip run for the score alone (``infer.score_overlap``, 0) per window of the
    prediction's pass (half overlap, as planned), over the candidate's median grid."""
    from medseg.infer.sliding import window_count

    grid, patch = [round(s) for s in cand.shape], list(cand.planned["topology"].patch)
    return window_count(grid, patch, 0.0) / window_count(grid, patch, 0.5)


def _fit(
    cand: Candidate, measured: Any, ref: Candidate | None, fp: dict[str, Any], budget: float | None
) -> None:
    """Epochs within the budget (nnU-Net's 1000 without one) and the study's predicted seconds."""
    work = _workload(cand, measured, ref, fp)
    cand.epochs = B.MAX_EPOCHS if budget is None else work.epochs_within(budget)
    cand.seconds = work.study_seconds(cand.epochs)


def choose(
    fp: dict[str, Any], cands: list[Candidate], budget: float | None, measure: Any, fits: Any
) -> Candidate:
    """The first candidate that trains ``MIN_EPOCHS`` within the budget and fits the memory.

    Args:
        fp: the fingerprint.
        cands: candidates from the finest and largest down.
        budget: seconds, or None (the first candidate, nnU-Net's 1000 epochs).
        measure: (candidate, step options or None to try them) -> its measurement on the device.
        fits: measurement -> whether its peak memory fits.

    Raises:
        MedsegError: none fits; the message gives the smallest budget that would, and its plan.
    """
    refs: dict[tuple[str, int], tuple[Candidate, Any]] = {}
    for cand in cands:
        key = (cand.network, cand.base)
        if key not in refs:
            family = [c for c in cands if (c.network, c.base) == key]
            small = (
                c for c in family if np.prod(c.planned["topology"].patch) <= REF_VOXELS[fp["spatial_dims"]]
            )
            ref = next(small, family[-1])
            refs[key] = (ref, measure(ref, None))
        ref, measured = refs[key]
        _fit(cand, measured, None if cand is ref else ref, fp, budget)
        if budget is None:
            cand.measured = measured
            return cand
        if cand.epochs < B.MIN_EPOCHS:
            continue
        if cand is ref:
            cand.measured = measured
        else:  # with the options its family's reference kept, and that reference's trials of them
            own = measure(cand, measured.options)
            cand.measured = dataclasses.replace(own, trials=measured.trials)
        _fit(cand, cand.measured, None, fp, budget)  # confirmed on the device
        if cand.epochs >= B.MIN_EPOCHS and fits(cand.measured):
            return cand
    last = cands[-1]
    if last.measured is not None and last.epochs >= B.MIN_EPOCHS:  # time enough, memory not
        raise MedsegError(
            f"even the smallest plan ({last.network}, scale {last.scale:g}) needs "
            f"{last.measured.peak_bytes / 2**20:.0f} MB per training step, more than the memory free "
            "for it here; free memory (or give a larger --gpu-memory on a larger GPU) and plan again"
        )
    own = (last, last.measured) if last.measured is not None else refs[(last.network, last.base)]
    raise MedsegError(_infeasible(fp, last, own, budget or 0.0))


def _infeasible(fp: dict[str, Any], last: Candidate, ref: tuple[Candidate, Any], budget: float) -> str:
    """What to do when no candidate fits: the smallest budget for the smallest plan and what it
    would give, from its own measurement where it was measured (``ref`` is then the candidate)."""
    from medseg.plan.calibrate import load_note

    work = _workload(last, ref[1], None if last is ref[0] else ref[0], fp)
    need = work.smallest_budget()
    epochs = work.epochs_within(need)
    busy = f"; measured with {load_note(ref[1])}" if ref[1].busy else ""
    return (
        f"--budget {B.shown(budget)}: even the smallest plan ({last.network}, scale {last.scale:g}) trains "
        f"fewer than {B.MIN_EPOCHS} epochs per fold in it; --budget {need // 60}m would give it: "
        f"{last.network} ({last.base} base features) at scale {last.scale:g}, patch "
        f"{list(last.planned['topology'].patch)}, batch {last.planned['batch_size']}, {epochs} epochs, "
        f"about {work.study_seconds(epochs) / 60:.0f} min (at {ref[1].seconds_per_step:.3f} s per step "
        f"measured here{busy})"
    )


def plan_study(
    root: Path,
    workflow: str,
    out: Path,
    device: str = "auto",
    memory_gb: float = 8.0,
    budget: float | None = None,
) -> dict[str, Any]:
    """Plan a study of the data under ``root`` and write it to ``out`` with its fingerprint.

    Args:
        root: the data folder.
        workflow: ``auto`` (found from the folder), ``isic``, ``ct``, ``mammo``, ``table``,
            ``nnunet`` or ``decathlon``.
        out: the pipeline file to write.
        device: ``auto``, ``cpu`` or ``cuda``: where calibration runs and the study will.
        memory_gb: the accelerator memory the plan fills (nnU-Net's 8 GB by default).
        budget: seconds the whole 5-fold study may take, or None for nnU-Net's 1000 epochs.

    Returns:
        What was planned: the chosen candidate, expected seconds, measurements.

    Raises:
        MedsegError: no usable case, or a budget too small for the smallest candidate.
    """
    from medseg.runtime import pick_device

    workflow = detect_workflow(root) if workflow == "auto" else workflow
    fp = fingerprint(root, workflow)
    cases = fp.pop("usable")
    if folds(fp) < 2:
        raise MedsegError(
            f"{root}: all {fp['n_cases']} cases belong to one patient; cross-validation needs images "
            "of at least two patients (the table's patient_id column)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.parent / f"{out.stem}.fingerprint.json", json.dumps(fp, indent=1))
    where = pick_device(device).type
    cands = candidates(fp, memory_gb, budget)
    chosen = choose(
        fp,
        cands,
        budget,
        lambda c, options: _measure(fp, c, out, where, cases, options, budget),
        lambda m: memory_fits(m.peak_bytes, where, memory_gb),
    )
    chosen.reasons["spacing"] = _geometry(fp)[2]
    chosen.reasons["epochs"] = (
        f"{B.MAX_EPOCHS} epochs, nnU-Net's schedule"
        if budget is None
        else f"the most epochs for which {folds(fp)} folds fit {B.MARGIN:.0%} of the {B.shown(budget)} "
        f"budget, at least {B.MIN_EPOCHS} (with fewer a coarser grid or a smaller network is planned: "
        "below about 50 epochs, more epochs gained more Dice than a finer grid)"
    )
    return _write(fp, chosen, root, workflow, out, where, memory_gb, budget)


def _write(
    fp: dict[str, Any],
    chosen: Candidate,
    root: Path,
    workflow: str,
    out: Path,
    where: str,
    memory_gb: float,
    budget: float | None,
) -> dict[str, Any]:
    """The pipeline file (each value with its reason, the step options measured) and its plan.json."""
    from medseg.plan.step_choice import option_reasons

    cfg, reasons = planned_config(fp, chosen, out.stem, out, where)
    m = chosen.measured
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=m.options)})  # measured options
    reasons.update(
        option_reasons(m.trials)
        if m.trials
        else {"train.precision": "as configured: the step options were not tried (see the calibration log)"}
    )
    command = (
        f"medseg plan {root} --workflow {workflow} --device {where}"
        + (f" --budget {B.shown(budget)}" if budget else "")
        + f" --gpu-memory {memory_gb:g}GB"
    )
    header = _header(fp, chosen, command, out, where, budget)
    write_text(out, to_yaml(cfg.model_dump(mode="json", exclude_unset=True), reasons, header))
    summary = {
        "pipeline": str(out),
        "expected_seconds": round(chosen.seconds, 1),
        "scale": chosen.scale,
        "network": chosen.network,
        "base_features": chosen.base,
        "epochs": chosen.epochs,
        "batch_size": chosen.planned["batch_size"],
        "patch": chosen.planned["topology"].patch,
        "seconds_per_step": m.seconds_per_step,
        "peak_bytes": m.peak_bytes,
        "device": where,
        "load": {"load_average": m.load, "cores": m.cores, "cpu_share": m.cpu_share, "busy": m.busy},
        "step_options": m.options,
    }
    write_text(out.parent / f"{out.stem}.plan.json", json.dumps(summary, indent=1))
    return summary


def _header(
    fp: dict[str, Any], chosen: Candidate, command: str, out: Path, where: str, budget: float | None
) -> list[str]:
    """The plan's opening comment: the command, the data, the expected wall time and the load."""
    from medseg.plan.calibrate import load_note

    m = chosen.measured
    header = [
        command,
        f"{fp['n_cases']} cases ({len(fp['bad_cases'])} bad), {fp['spatial_dims']}D {fp['modality']}, "
        f"median shape {[round(s) for s in fp['median_shape']]}, classes {n_classes(fp)} "
        f"({out.stem}.fingerprint.json)",
        f"expected wall time of the {folds(fp)}-fold study: {chosen.seconds / 60:.1f} min on {where} "
        f"({m.seconds_per_step:.3f} s per training step measured, "
        f"{m.peak_bytes / 2**20:.0f} MB peak per step; {load_note(m)})",
        "Each planned value says why beside it; medseg run records the real wall time in timing.json.",
        "",
    ]
    if budget is None and chosen.seconds > DAY:
        hint = f"about {chosen.seconds / 3600:.0f} h on {where}: give --budget (such as --budget 2h) to fit "
        hint += "a time"
        log.warning("plan: %s", hint)
        header.insert(3, f"WARNING: {hint}")
    return header


def memory_fits(peak_bytes: int, device: str, memory_gb: float) -> bool:
    """Whether a measured training step fits: ``memory_gb`` on a GPU; on a CPU, the memory the
    machine has available now (``MemAvailable``), with a quarter kept free."""
    if device == "cuda":
        return peak_bytes <= memory_gb * 2**30
    try:
        line = next(
            x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemAvailable:")
        )
    except (OSError, StopIteration):
        return True
    return peak_bytes <= 0.75 * int(line.split()[1]) * 1024


def parse_duration(text: str) -> float:
    """Seconds of ``30m``, ``2h``, ``90s`` or a bare number of seconds: finite and positive.

    Example:
        >>> parse_duration("30m"), parse_duration("1.5h"), parse_duration("45")
        (1800.0, 5400.0, 45.0)
    """
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise MedsegError(f"--budget {text}: expected a duration such as 30m, 2h or 900s") from None
    if not math.isfinite(value) or value <= 0:
        raise MedsegError(f"--budget {text}: must be positive and finite, such as 30m, 2h or 900s")
    return value


def parse_memory(text: str) -> float:
    """Gigabytes of ``24GB``, ``24G`` or ``24``: finite, at least 0.25 GB."""
    t = text.strip().upper().removesuffix("B").removesuffix("G")
    try:
        value = float(t)
    except ValueError:
        raise MedsegError(f"--gpu-memory {text}: expected a size such as 24GB") from None
    if not math.isfinite(value) or value <= 0:
        raise MedsegError(f"--gpu-memory {text}: must be positive")
    if value < 0.25:
        raise MedsegError(
            f"--gpu-memory {text}: at least 0.25GB (no network trains in less); give the GPU's memory"
        )
    return value
