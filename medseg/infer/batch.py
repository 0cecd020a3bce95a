"""``medseg predict``: segment every selected input under a folder with a trained study's models.

For each input: read it and prepare intensities with the pipeline's own transforms (the reference
grid of ``medseg run``), sliding-window inference with every fold model (and flips when
``infer.tta_flips``), mean of the softmax, back onto the grid as stored, argmax, post-processing
(``infer.largest_component``, ``infer.fill_holes``), then the files of
:mod:`medseg.infer.outputs`. ``manifest.csv`` gets a row per input as it finishes and
``summary.json`` the totals. A failing input is recorded with its reason and the batch goes on; a
rerun skips what is done.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medseg.errors import DataError
from medseg.infer import parts
from medseg.infer.bundle import ModelBundle
from medseg.infer.discover import InputItem, discover
from medseg.infer.flow import segment_all
from medseg.infer.manifest import NAME, Manifest
from medseg.infer.outputs import segments_of
from medseg.infer.segmenter import Prepared, algorithm_parameters, check_statistics, default_workers
from medseg.io.atomic import write_json
from medseg.io.dataset_json import channels_differ
from medseg.io.dicom_seg import Segments
from medseg.io.privacy import Redactor, hidden
from medseg.io.raster import set_pixel_limit

log = logging.getLogger(__name__)


def predict_folder(
    bundle: ModelBundle,
    input_dir: Path,
    out_dir: Path,
    device: torch.device,
    log_paths: bool = False,
    workers: int | None = None,
    part: parts.Part = parts.WHOLE,
) -> dict[str, Any]:
    """Segment every selected input under ``input_dir`` (or part ``part`` of them) into ``out_dir``.

    Args:
        bundle: the study's configuration and fold checkpoints.
        input_dir: a folder tree of DICOM, NIfTI or PNG/JPEG files.
        out_dir: where the outputs, ``manifest.csv`` and ``summary.json`` go.
        device: where inference runs.
        log_paths: show DICOM paths inside ``input_dir`` in the manifest and the log; otherwise
            each input's ``ref`` stands for them (see :mod:`medseg.infer.discover`).
        workers: on a GPU reading processes, on the CPU processes that segment whole inputs
            (default: :func:`~medseg.infer.segmenter.default_workers`; 0: all in this process).
        part: (I, N): this job's share of the inputs (:mod:`medseg.infer.parts`).

    Returns:
        Counts of inputs done, done earlier, skipped and failed, with timing and the model.

    Raises:
        DataError: ``input_dir`` is not a folder. A failing input is recorded, never raised.
        Busy: another job runs this batch, or this part of it.
    """
    input_dir, out_dir = Path(input_dir).resolve(), Path(out_dir)
    check_statistics(bundle.cfg, bundle.source)
    review_note(bundle.cfg.predict.review_threshold, bundle.cfg.evaluate.uncertainty)
    if (differ := channels_differ(input_dir, bundle.channel_names)) is not None:
        raise DataError(differ)
    set_pixel_limit(bundle.cfg.data.max_image_pixels)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = default_workers(device) if workers is None else workers
    with parts.holding(out_dir, part), hidden(hiding(input_dir, log_paths)) as redact:
        manifest = Manifest(out_dir, parts.manifest_name(part), (NAME,))
        segments = segments_of(bundle.cfg, **algorithm_parameters(bundle))  # label_codes checked here
        run = _Batch(out_dir, manifest, _Show(input_dir, log_paths, redact), segments)
        cfg = bundle.cfg
        found = discover(input_dir, cfg.transforms.spatial_dims, cfg.predict, cfg.reads_channel_files)
        items = parts.share(found, part)
        todo = _select(items, run.manifest, run.counts, run.show)
        log.info(
            "predict%s: %d input(s) to segment, %d done earlier, %d skipped, with %d fold model(s) on %s, "
            "%d worker process(es)",
            f" part {part[0]}/{part[1]}" if part != parts.WHOLE else "",
            len(todo), run.counts["done_earlier"], run.counts["skipped"], len(bundle.checkpoints), device,
            workers,
        )  # fmt: skip
        t0 = time.perf_counter()
        _segment_all(bundle, todo, device, run, workers)
        summary = _summary(run, time.perf_counter() - t0, bool(todo), workers, part, bundle, device)
        write_json(out_dir / parts.summary_name(part), summary)
    if part != parts.WHOLE and (merged := parts.merge(out_dir, part[1])) is not None:
        log.info("predict: every part has finished; manifest.csv and summary.json merged")
        summary["merged"] = merged
    return summary


def hiding(root: Path, log_paths: bool) -> Redactor:
    """What hides the names of the files under ``root`` that are not named by a format's suffix
    (DICOM files and folders, whose names real exports make of the patient's), from the first
    header read on, library warnings included; nothing with ``--log-paths``."""
    from medseg.io.dicom import walk_files
    from medseg.io.readers import reader_by_name

    if log_paths or not root.is_dir():
        return Redactor(root)
    return Redactor(root, (p for p in walk_files(root) if reader_by_name(p) is None))


def _summary(
    run: _Batch,
    wall: float,
    any_todo: bool,
    workers: int,
    part: parts.Part,
    bundle: ModelBundle,
    device: torch.device,
) -> dict[str, Any]:
    return {
        **run.counts,
        "inputs_per_minute": round(60.0 * run.counts["done"] / wall, 2) if any_todo else None,
        "seconds": round(wall, 2),
        "stage_seconds": {k: round(v, 2) for k, v in run.stage_seconds.items()},
        "workers": workers,
        "part": f"{part[0]}/{part[1]}",
        "algorithm": run.segments.identity,
        "model": bundle.source,
        "folds": sorted(bundle.checkpoints),
        "device": str(device),
    }


@dataclass
class _Batch:
    """What a batch records as its inputs finish."""

    out_dir: Path
    manifest: Manifest
    show: _Show
    segments: Segments
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(parts.COUNTS, 0))
    stage_seconds: dict[str, float] = field(default_factory=dict)


class _Show:
    """How paths appear: inside the input folder only, and DICOM paths only with ``--log-paths``."""

    def __init__(self, root: Path, log_paths: bool, redact: Redactor | None = None) -> None:
        self.root, self.log_paths = root, log_paths
        self.redact = redact or Redactor(root)

    def name(self, item: InputItem) -> str:
        """How the log and the progress bar name an input: its path when that may be shown, else
        its modality, kind, the end of its UID and its number of files."""
        if self.log_paths or item.named_by_path:
            return item.source or item.key
        uid = item.series_uid if item.kind == "dicom_series" else item.sop_uid or item.key
        kind = item.kind.replace("_", " ")
        return f"{item.modality or 'DICOM'} {kind} …{uid[-10:]} ({len(item.files)} file(s))"

    def reason(self, item: InputItem, text: str) -> str:
        if not self.log_paths:
            text = self.redact(text)
        return " ".join(text.replace(f"{self.root}/", "").replace(str(self.root), ".").split())[:500]

    def row(self, item: InputItem, status: str, reason: str = "", **extra: Any) -> dict[str, Any]:
        """The manifest row of ``item``, ``reason`` as :meth:`reason` shows it; the input's path
        only with ``--log-paths`` or when its own path names it."""
        return {
            "key": item.key,
            "kind": item.kind,
            "status": status,
            "reason": self.reason(item, reason),
            "modality": item.modality,
            "study_uid": item.study_uid,
            "series_uid": item.series_uid,
            "sop_uid": item.sop_uid if item.kind != "dicom_series" else "",
            "n_files": len(item.files),
            "ref": item.ref,
            "source": item.source if self.log_paths or item.named_by_path else "",
            **extra,
        }


def _select(
    items: list[InputItem], manifest: Manifest, counts: dict[str, int], show: _Show
) -> list[InputItem]:
    """Record skipped inputs and those done by an earlier run; the inputs left to segment."""
    todo: list[InputItem] = []
    for item in items:
        if item.skip is not None:
            skipped = show.row(item, "skipped", item.skip)
            manifest.record(skipped)
            counts["skipped"] += 1
            log.info("%s (%s): skipped: %s", item.key, item.kind, skipped["reason"])
        elif (row := manifest.finished_earlier(item.key, _own_ref(item))) is not None:
            manifest.record(row)
            counts["done_earlier"] += 1
        else:
            todo.append(item)
    return todo


def _own_ref(item: InputItem) -> str | None:
    """What an earlier row must have been made from to stand for ``item``: the ``ref`` of an input
    named by its path (``a.png`` and a later ``a.jpg`` share the key ``a``); None for a DICOM input,
    named by its UID wherever its files lie."""
    return item.ref if item.named_by_path else None


def _segment_all(
    bundle: ModelBundle,
    todo: list[InputItem],
    device: torch.device,
    run: _Batch,
    workers: int,
) -> None:
    """Segment and write each input, recording it as it finishes."""
    from medseg.progress import bar as progress_bar

    bar = progress_bar(len(todo), "predict", "input")

    def inside(prep: Prepared, fraction: float) -> None:
        bar.set_postfix_str(f"{run.show.name(prep.item)[-40:]} {fraction:4.0%}")

    def done(prep: Prepared, written: dict[str, str], note: str) -> None:
        item, stages = prep.item, {f"{k}_s": round(v, 3) for k, v in prep.seconds.items()}
        show = run.show.name(item)
        bar.set_postfix_str(show[-40:], refresh=False)
        seconds = round(sum(prep.seconds.values()), 2)
        for stage, value in prep.seconds.items():
            run.stage_seconds[stage] = run.stage_seconds.get(stage, 0.0) + value
        if prep.error is not None:
            failed = run.show.row(item, "failed", prep.error, seconds=seconds, **stages)
            run.manifest.record(failed)
            run.counts["failed"] += 1
            log.warning("%s: failed: %s", show, failed["reason"])
        else:
            review = review_flag(prep.uncertainty, bundle.cfg.predict.review_threshold)
            extra = {"seconds": seconds, "algorithm": run.segments.identity, **stages, **written}
            extra |= {"uncertainty": _round(prep.uncertainty), "review": review}
            extra |= {"fold_disagreement": _round(prep.fold_disagreement), **prep.findings}
            row = run.show.row(item, "done", note, **extra)
            run.manifest.record(row)
            run.counts["done"] += 1
            run.counts["review"] += review == "yes"
            flag = "; REVIEW" if review == "yes" else ""
            log.info("%s: done in %.1fs, uncertainty %s%s", show, seconds, row["uncertainty"], flag)
            if note:
                log.info("%s: %s", show, row["reason"])
        bar.update()

    try:
        segment_all(
            bundle,
            run.segments,
            todo,
            device,
            run.out_dir,
            workers,
            done,
            None if bar.disable else inside,
        )
    finally:
        bar.close()


def review_flag(uncertainty: float, threshold: float | None) -> str:
    """``yes`` above the threshold, ``no`` at or below it, empty without a score
    (``evaluate.uncertainty: false``) or without a threshold (the study could choose none).

    Example:
        >>> review_flag(0.3, 0.1), review_flag(0.02, 0.1)
        ('yes', 'no')
        >>> review_flag(float("nan"), 0.1), review_flag(0.3, None)
        ('', '')
    """
    if uncertainty != uncertainty or threshold is None:  # NaN, or no threshold
        return ""
    return "yes" if uncertainty > threshold else "no"


def review_note(threshold: float | None, scored: bool) -> None:
    """Say once which review threshold applies, or why no input will be flagged."""
    if not scored:
        log.warning("review: no flag (evaluate.uncertainty: false, so inputs get no uncertainty score)")
    elif threshold is None:
        log.warning(
            "review: no flag: the study chose no threshold (see review.json in its run folder); "
            "give one with --set predict.review_threshold=0.05"
        )
    else:
        log.info(
            "review: inputs whose uncertainty is above %g are flagged (predict.review_threshold)", threshold
        )


def _round(value: float) -> float | str:
    return "" if value != value else round(float(value), 4)


def summary_line(summary: dict[str, Any]) -> str:
    """The one line ``medseg predict`` prints at the end."""
    rate = summary["inputs_per_minute"]
    return (
        f"done {summary['done']}, done earlier {summary['done_earlier']}, skipped {summary['skipped']}, "
        f"failed {summary['failed']}; {summary.get('review', 0)} flagged for review; "
        f"{rate if rate is not None else '-'} inputs per minute"
    )
