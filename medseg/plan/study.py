"""``medseg plan``: fingerprint, rules, calibration and budget, written as a pipeline file."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.io.atomic import write_text
from medseg.plan import budget as B
from medseg.plan import rules
from medseg.plan.fingerprint import data_config, fingerprint
from medseg.plan.write import to_yaml

log = logging.getLogger(__name__)
MIN_STAGES = 3  # DynUNet's least: two poolings
REF_VOXELS = {2: 65_536, 3: 1_000_000}  # a network is measured at the first scale with a patch this small

AUGMENT = {
    "RGB": [
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 1}},
        {"RandAffined": {"prob": 0.5, "rotate_range": 0.5, "scale_range": 0.15, "padding_mode": "zeros"}},
        {"RandScaleIntensityd": {"prob": 0.5, "factors": 0.15}},
        {"RandShiftIntensityd": {"prob": 0.5, "offsets": 0.15}},
        {"RandAdjustContrastd": {"prob": 0.3, "gamma": [0.8, 1.25]}},
    ],
    "2D": [
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
        {"RandAffined": {"prob": 0.5, "rotate_range": 0.2, "scale_range": 0.15, "padding_mode": "zeros"}},
        {"RandScaleIntensityd": {"prob": 0.3, "factors": 0.1}},
        {"RandShiftIntensityd": {"prob": 0.3, "offsets": 0.1}},
    ],
    "3D": [
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 1}},
        {
            "RandAffined": {
                "prob": 0.3,
                "rotate_range": [0.0, 0.0, 0.2],
                "scale_range": 0.1,
                "padding_mode": "zeros",
            }
        },
        {"RandScaleIntensityd": {"prob": 0.3, "factors": 0.1}},
        {"RandShiftIntensityd": {"prob": 0.3, "offsets": 0.1}},
    ],
}


@dataclass
class Candidate:
    """One way to run the study: a resolution scale and a network width, planned by the rules."""

    scale: float
    network: str
    base: int
    spacing: list[float]
    shape: list[float]
    planned: dict[str, Any]
    epochs: int = 0
    seconds: float = 0.0
    measured: Any = None
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def work(self) -> float:
        """Feature-map voxels per step: what seconds per step are predicted in proportion to."""
        return float(self.planned["feature_map_voxels"] * self.planned["batch_size"])


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


def _candidate(
    fp: dict[str, Any], scale: float, network: str, base: int, memory_gb: float, n_classes: int
) -> Candidate:
    spacing, shape, _ = _geometry(fp)
    if fp["spatial_dims"] == 3:
        spacing = [s / scale for s in spacing]
    shape = [max(8.0, s * scale) for s in shape]
    voxels = float(np.prod(shape)) * fp["n_cases"]
    planned = rules.patch_and_batch(
        [1.0] * len(shape) if fp["spatial_dims"] == 2 else spacing,
        shape,
        fp["channels"],
        n_classes,
        memory_gb,
        voxels,
        base,
    )
    return Candidate(scale, network, base, spacing, shape, planned)


def _folds(fp: dict[str, Any]) -> int:
    """Five folds, or one per patient when there are fewer (a patient never on both sides)."""
    return min(B.FOLDS, fp.get("n_patients", fp["n_cases"]))


def _val_fraction(fp: dict[str, Any]) -> float:
    """0.1 of each fold's training patients watch for the best epoch; 0 with too few to spare."""
    n = fp.get("n_patients", fp["n_cases"])
    return 0.1 if n - math.ceil(n / _folds(fp)) >= 3 else 0.0


def _n_classes(fp: dict[str, Any]) -> int:
    """Classes with background: 2 for pictures and masks of one value (1 or 255), else the
    largest label value plus one."""
    values = sorted(int(k) for k in fp["classes"] if int(k) != 0)
    if fp["workflow"] == "isic" or values in ([], [1], [255]):
        return 2
    return values[-1] + 1


def raw_config(
    fp: dict[str, Any], cand: Candidate, name: str, out: Path, device: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The pipeline (as YAML data) of a candidate, and the reason of each planned value."""
    dims, topo = fp["spatial_dims"], cand.planned["topology"]
    here = out.parent.resolve()
    data: dict[str, Any] = {"root": os.path.relpath(Path(fp["root"]).resolve(), here)}
    reasons: dict[str, str] = {}
    cfg_data = data_config(Path(fp["root"]), fp["workflow"])
    if cfg_data.layout == "table":
        data.update(layout="table", in_channels=fp["channels"], num_classes=_n_classes(fp))
        values = sorted(int(k) for k in fp["classes"])
        reasons["data.num_classes"] = f"label values {values}" + (
            ": a binary mask" if _n_classes(fp) == 2 else ", background included"
        )
        if cfg_data.mammography is not None:
            data["mammography"] = {}
    if fp["workflow"] == "isic":
        data["class_names"] = ["skin_lesion"]
    if fp["bad_cases"]:
        data["on_bad_case"] = "skip"
    preprocess, norm_reason = rules.normalisation(fp["modality"], fp["intensity"])
    transforms: dict[str, Any] = {}
    reasons["transforms.preprocess"] = norm_reason
    patch = [int(p) for p in topo.patch]
    if dims == 2:
        size = rules.pad_to([round(s) for s in cand.shape], topo.divisible_by)
        transforms["spatial_size"] = size
        reasons["transforms.spatial_size"] = (
            "the median picture size"
            + (f" scaled by {cand.scale:g} to fit the budget" if cand.scale < 1 else "")
            + f", padded to a multiple of {topo.divisible_by}"
        )
        if patch != size:
            transforms["patch_size"] = patch
            reasons["transforms.patch_size"] = (
                "the largest patch whose feature maps fit the memory at batch 2"
            )
    else:
        transforms.update(
            spacing=[round(s, 4) for s in cand.spacing],
            patch_size=patch,
            patch_pos=1,
            patch_neg=2,
            patches_per_image=2,
        )
        reasons["transforms.spacing"] = cand.reasons.get("spacing", "target spacing") + (
            f", coarsened by 1/{cand.scale:g} to fit the budget" if cand.scale < 1 else ""
        )
        reasons["transforms.patch_size"] = (
            "initial 256^3-voxel patch in the spacing's aspect, clipped to the median shape, "
            "shrunk to fit the memory"
        )
        reasons["transforms.patch_neg"] = "one patch in three centred on foreground, as nnU-Net oversamples"
    transforms["preprocess"] = preprocess
    kind = "3D" if dims == 3 else "RGB" if fp["channels"] == 3 else "2D"
    transforms["train"] = AUGMENT[kind]
    pooling = "pool an axis while its spacing is under twice the finest and the bottleneck keeps 4 voxels"
    if cand.network == "DynUNet":
        model = {
            "name": "DynUNet",
            "args": {
                "kernel_size": topo.kernels,
                "strides": topo.strides,
                "upsample_kernel_size": topo.strides[1:],
                "filters": cand.planned["features"],
                "deep_supervision": topo.n_stages >= 3,
                "deep_supr_num": max(1, topo.n_stages - 2),
            },
        }
        reasons["model.args.deep_supervision"] = (
            "the loss also sees every decoder level above the bottleneck, weights halving (nnU-Net)"
        )
        reasons["model.args.kernel_size"] = "3 on axes within twice the finest spacing, else 1"
        reasons["model.args.filters"] = f"{cand.base} * 2^stage, capped at {rules.MAX_FEATURES[dims]}" + (
            " (halved to fit the budget)" if cand.base < rules.BASE_FEATURES else ""
        )
    else:
        channels = [min(cand.base * 2**i, 16 * cand.base) for i in range(topo.n_stages)]
        model = {
            "name": "UNet",
            "args": {"channels": channels, "strides": topo.strides[1:], "num_res_units": 2},
        }
        reasons["model.name"] = (
            "MONAI's UNet (strided convolutions, residual units): a smaller network for the budget"
        )
    reasons["model.args.strides"] = pooling
    train = {
        "epochs": cand.epochs,
        "batch_size": cand.planned["batch_size"],
        "patience": None,
        "device": device,
        "optimizer": {"lr": 0.002},
    }
    reasons["train.batch_size"] = (
        "fills the memory (nnU-Net's reference), at most 5% of the data set's voxels, at least 2"
    )
    reasons["train.epochs"] = cand.reasons.get("epochs", "")
    if _val_fraction(fp) == 0:
        train["val_fraction"] = 0
        reasons["train.val_fraction"] = "too few patients in a fold to hold some back: the last epoch is kept"
    reasons["train.patience"] = (
        "no early stop: the best validation epoch is kept, the schedule runs to its end"
    )
    infer = rules.sliding_window(
        patch if dims == 3 or "patch_size" in transforms else transforms["spatial_size"]
    )
    reasons["infer.overlap"] = "half a window, Gaussian-weighted, as nnU-Net predicts"
    infer["largest_component"] = "auto"
    reasons["infer.largest_component"] = (
        "chosen from the cross-validated Dice at the end of the run (nnU-Net's rule)"
    )
    if _folds(fp) < B.FOLDS:
        reasons["split.n_folds"] = f"only {fp['n_patients']} patients: folds never split a patient's images"
    raw = {
        "name": name,
        "output_dir": os.path.relpath(Path("runs").resolve() / name, here),
        "fingerprint": "fingerprint.json",
        "data": data,
        "split": {"n_folds": _folds(fp)},
        "transforms": transforms,
        "model": model,
        "train": train,
        "infer": infer,
    }
    if fp["modality"] not in ("RGB", "grey", "unknown"):
        raw["predict"] = {"modalities": [fp["modality"]]}
        reasons["predict.modalities"] = "the modality of the planned data; predict skips other series"
    return raw, {k: v for k, v in reasons.items() if v}


def _bind(raw: dict[str, Any], out: Path) -> Any:
    """The candidate as a bound PipelineConfig (paths resolved against the plan's folder)."""
    from medseg.config.load import bind_components, validate_dict

    resolved = json.loads(json.dumps(raw))
    resolved["data"]["root"] = str((out.parent / raw["data"]["root"]).resolve())
    resolved["output_dir"] = str((out.parent / raw["output_dir"]).resolve())
    resolved.pop("fingerprint")
    resolved["train"]["epochs"] = max(1, resolved["train"]["epochs"])
    return bind_components(validate_dict(resolved, str(out)))


def _measure(
    fp: dict[str, Any],
    cand: Candidate,
    out: Path,
    device: str,
    cases: list[dict[str, Any]],
    options: dict[str, Any] | None = None,
    budget: float | None = None,
) -> Any:
    """Measure ``cand``: with the step ``options`` chosen earlier, or trying them (None) where a
    study of it could fit ``budget``."""
    from medseg.plan.calibrate import measure

    raw, _ = raw_config(fp, cand, "calibration", out, device)
    raw["tracking"] = {"enabled": False}
    raw["train"].update(options or {})
    cfg = _bind(raw, out)
    log.info(
        "calibrating %s (%d base features) at scale %g, patch %s, batch %d",
        cand.network, cand.base, cand.scale, list(cand.planned["topology"].patch), cand.planned["batch_size"],
    )  # fmt: skip
    return measure(cfg, cases, try_options=options is None, budget=budget)


def _workload(cand: Candidate, measured: Any, ref: Candidate | None, fp: dict[str, Any]) -> B.Workload:
    """The study's workload from a measurement of ``cand`` itself or (``ref`` given) of another
    candidate scaled by feature-map voxels."""
    ratio = 1.0 if ref is None else cand.work / ref.work
    per_case = 1.0 if ref is None else cand.planned["feature_map_voxels"] / ref.planned["feature_map_voxels"]
    return B.Workload(
        fp["n_cases"],
        _folds(fp),
        cand.planned["batch_size"],
        2 if fp["spatial_dims"] == 3 else 1,
        measured.seconds_per_step * ratio,
        measured.seconds_per_val_case * per_case,
        measured.seconds_per_load,
        _val_fraction(fp),
        members=1 + fp["spatial_dims"],  # evaluate.uncertainty: the held-out flips
    )


def _fit(
    cand: Candidate, measured: Any, ref: Candidate | None, fp: dict[str, Any], budget: float | None
) -> None:
    """Epochs within the budget (nnU-Net's 1000 without one) and the study's predicted seconds
    (see :func:`_workload`)."""
    work = _workload(cand, measured, ref, fp)
    cand.epochs = B.MAX_EPOCHS if budget is None else work.epochs_within(budget)
    cand.seconds = work.study_seconds(cand.epochs)


def _duration(seconds: float) -> str:
    """``seconds`` as ``--budget`` takes it: whole minutes as ``30m``, else ``45s``."""
    return f"{seconds / 60:g}m" if seconds % 60 == 0 else f"{seconds:g}s"


def _too_small(
    budget: float,
    cands: list[Candidate],
    refs: dict[tuple[str, int], tuple[Candidate, Any]],
    fp: dict[str, Any],
) -> MedsegError:
    """The refusal of a budget no candidate fits, with the smallest budget that would fit and the
    plan it would give (the smallest candidate), or the memory when that is what failed."""
    from medseg.plan.calibrate import load_note

    small = cands[-1]
    ref, measured = refs[(small.network, small.base)]
    work = _workload(small, measured, None if small is ref else ref, fp)
    if work.epochs_within(budget) >= B.MIN_EPOCHS:
        return MedsegError(
            f"--budget {_duration(budget)}: the smallest plan ({small.network}, scale {small.scale:g}) "
            "fits the budget but not the memory; give a larger --gpu-memory or free memory"
        )
    need = work.smallest_budget()
    epochs = work.epochs_within(need)
    busy = f" (measured with {load_note(measured)})" if measured.busy else ""
    return MedsegError(
        f"--budget {_duration(budget)}: even the smallest plan ({small.network}, scale {small.scale:g}) "
        f"trains fewer than {B.MIN_EPOCHS} epochs per fold in it; --budget {need // 60}m would give "
        f"{small.network} ({small.base} base features) at {list(small.planned['topology'].patch)}, "
        f"batch {small.planned['batch_size']}, {epochs} epochs, about "
        f"{work.study_seconds(epochs) / 60:.0f} min{busy}"
    )


def plan_study(
    root: Path,
    workflow: str,
    out: Path,
    device: str = "auto",
    memory_gb: float = 8.0,
    budget: float | None = None,
) -> dict[str, Any]:
    """Plan a study of the data under ``root`` and write it to ``out`` with ``fingerprint.json``.

    Args:
        root: the data folder.
        workflow: ``isic``, ``ct``, ``mammo`` or ``table``.
        out: the pipeline file to write.
        device: ``auto``, ``cpu`` or ``cuda``: where calibration runs and the study will.
        memory_gb: the accelerator memory the plan fills (nnU-Net's 8 GB by default).
        budget: seconds the whole 5-fold study may take, or None for nnU-Net's 1000 epochs.

    Returns:
        What was planned: the chosen candidate, expected seconds, measurements.

    Raises:
        MedsegError: no usable case, or a budget too small for the smallest candidate.
    """
    from medseg.plan.calibrate import load_note
    from medseg.plan.step_choice import option_reasons
    from medseg.runtime import pick_device

    fp = fingerprint(root, workflow)
    cases = fp.pop("usable")
    if _folds(fp) < 2:
        raise MedsegError(
            f"{root}: all {fp['n_cases']} cases belong to one patient; cross-validation needs images "
            "of at least two patients (the table's patient_id column)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.parent / "fingerprint.json", json.dumps(fp, indent=1))
    where = pick_device(device).type
    n_classes = _n_classes(fp)
    spacing_reason = _geometry(fp)[2]
    nets = B.NETWORKS if budget else B.NETWORKS[:1]
    cands = [
        _candidate(fp, s, n, b, memory_gb, n_classes)
        for s in (B.SCALES if budget else (1.0,))
        for n, b in nets
    ]
    cands = [c for c in cands if c.planned["topology"].n_stages >= MIN_STAGES]
    if not cands:
        raise MedsegError(
            f"{root}: median shape {[round(s) for s in fp['median_shape']]} is too small for a U-Net of "
            f"{MIN_STAGES} levels (at least {4 * rules.MIN_EDGE} voxels per axis); write the pipeline by hand"
        )
    refs: dict[tuple[str, int], tuple[Candidate, Any]] = {}
    chosen = None
    for cand in cands:
        key = (cand.network, cand.base)
        if key not in refs:
            family = [c for c in cands if (c.network, c.base) == key]
            ref = next(
                (c for c in family if np.prod(c.planned["topology"].patch) <= REF_VOXELS[fp["spatial_dims"]]),
                family[-1],
            )
            refs[key] = (ref, _measure(fp, ref, out, where, cases, budget=budget))
        ref, measured = refs[key]
        if budget is None:
            cand.measured = measured
            _fit(cand, measured, None, fp, None)
            chosen = cand
            break
        _fit(cand, measured, None if cand is ref else ref, fp, budget)
        if cand.epochs < B.MIN_EPOCHS:
            continue
        if cand is ref:
            cand.measured = measured
        else:  # with the options its family's reference kept, and that reference's trials of them
            own = _measure(fp, cand, out, where, cases, measured.options)
            cand.measured = dataclasses.replace(own, trials=measured.trials)
        _fit(cand, cand.measured, None, fp, budget)  # confirmed on the device
        if cand.epochs >= B.MIN_EPOCHS and memory_fits(cand.measured.peak_bytes, where, memory_gb):
            chosen = cand
            break
    if chosen is None:
        raise _too_small(budget or 0.0, cands, refs, fp)
    chosen.reasons["spacing"] = spacing_reason
    chosen.reasons["epochs"] = (
        f"{B.MAX_EPOCHS} epochs, nnU-Net's schedule"
        if budget is None
        else f"the most epochs for which 5 folds fit {B.MARGIN:.0%} of the {budget / 60:.0f} min budget"
    )
    name = out.stem
    raw, reasons = raw_config(fp, chosen, name, out, where)
    m = chosen.measured
    raw["train"].update(m.options)  # the step options measured (kept, where tried), commented
    reasons.update(
        option_reasons(m.trials)
        if m.trials
        else {"train.precision": "as configured: the step options were not tried (see the calibration log)"}
    )
    header = [
        f"medseg plan {root} --workflow {workflow} --device {where}"
        + (f" --budget {budget / 60:g}m" if budget else "")
        + f" --gpu-memory {memory_gb:g}GB",
        f"{fp['n_cases']} cases ({len(fp['bad_cases'])} bad), {fp['spatial_dims']}D {fp['modality']}, "
        f"median shape {[round(s) for s in fp['median_shape']]}, classes {n_classes} (fingerprint.json)",
        f"expected wall time of the {_folds(fp)}-fold study: {chosen.seconds / 60:.1f} min on {where} "
        f"({m.seconds_per_step:.3f} s per training step measured, "
        f"{m.peak_bytes / 2**20:.0f} MB peak per step; {load_note(m)})",
        "Each planned value says why beside it; medseg run records the real wall time in timing.json.",
        "",
    ]
    text = to_yaml(raw, reasons, header)
    write_text(out, text)
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
    write_text(out.parent / f"{name}.plan.json", json.dumps(summary, indent=1))
    return summary


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
    """Seconds of ``30m``, ``2h``, ``90s`` or a bare number of seconds.

    Example:
        >>> parse_duration("30m"), parse_duration("1.5h"), parse_duration("45")
        (1800.0, 5400.0, 45.0)
    """
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise MedsegError(f"--budget {text}: expected a duration such as 30m, 2h or 900s") from None


def parse_memory(text: str) -> float:
    """Gigabytes of ``24GB``, ``24G`` or ``24``."""
    t = text.strip().upper().removesuffix("B").removesuffix("G")
    try:
        value = float(t)
    except ValueError:
        raise MedsegError(f"--gpu-memory {text}: expected a size such as 24GB") from None
    if not math.isfinite(value) or value <= 0:
        raise MedsegError(f"--gpu-memory {text}: must be positive")
    return value
