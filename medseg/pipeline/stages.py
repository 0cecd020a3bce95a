"""The stages of a study before training: ingest, splits and intensity statistics.

Each writes its file into the run folder (:mod:`medseg.run_dir`) and can be re-run from its
inputs: ``datalist.json``, ``splits.json``, ``intensity_stats.json``. A run that fails before any
fold has weights removes the files of its set-up it wrote itself (:func:`undo_set_up`), so a rerun
starts from the data and settings it is given, not from those of the failed attempt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from medseg.config.load import missing_statistics, with_statistics
from medseg.config.models import PipelineConfig
from medseg.data.datalist import BadCase, build_datalist
from medseg.data.synthetic import generate_dataset
from medseg.data.synthetic_ct import generate_ct_dataset
from medseg.errors import DataError
from medseg.io.atomic import write_json
from medseg.io.case import Case
from medseg.io.lock import Busy, remove_free
from medseg.io.names import MAX_STEM_BYTES, check_name_room, file_stem
from medseg.run_dir import RunDir
from medseg.transforms.statistics import gather_foreground_stats

log = logging.getLogger(__name__)


def ingest(cfg: PipelineConfig, run_dir: Path) -> tuple[list[Case], list[BadCase]]:
    """Generate the synthetic set if configured and missing, verify pairs, write ``datalist.json``.

    Args:
        cfg: the resolved pipeline configuration.
        run_dir: the run folder.

    Returns:
        (usable cases, bad cases with their reasons).

    Raises:
        DataError: a missing folder, bad cases while ``data.on_bad_case`` is ``stop``, or case ids
            that cannot name their files (:func:`check_case_names`).
    """
    if cfg.data.synthetic is not None and not Path(cfg.data.root).exists():
        generate_synthetic(cfg)
    cases, bad = build_datalist(cfg.data, cfg.transforms.spatial_dims, cfg.image_channels)
    check_case_names(cases, Path(run_dir))
    RunDir(run_dir).write_datalist(Path(cfg.data.root), cases, bad)
    log.info("ingest: %d cases, %d skipped", len(cases), len(bad))
    return cases, bad


def check_case_names(cases: list[Case], run_dir: Path) -> None:
    """Before any training: every case id names its held-out prediction and overlay within what a
    file name takes (an id of more than :data:`~medseg.io.names.MAX_STEM_BYTES` bytes of UTF-8, such
    as 100 CJK characters, by its start and a hash: :func:`~medseg.io.names.file_stem`), no two
    cases the same files, on a file system that takes names of 255 bytes.

    Raises:
        DataError: naming the two ids, or the run folder and its file system's limit.
    """
    check_name_room(run_dir, "output_dir")
    seen: dict[str, str] = {}
    for case in cases:
        other = seen.setdefault(file_stem(case.id).casefold(), case.id)
        if other != case.id:
            raise DataError(
                f"case ids '{other[:80]}' and '{case.id[:80]}' would name the same prediction files; "
                "rename one"
            )
    shortened = [c.id for c in cases if file_stem(c.id) != c.id]
    if shortened:
        log.info(
            "%d case id(s) too long for a file name (over %d bytes) name their files by a shortened form "
            "ending in a hash, such as %s",
            len(shortened),
            MAX_STEM_BYTES,
            file_stem(shortened[0]),
        )


def resolve_channel_files(cfg: PipelineConfig, cases: list[Case]) -> PipelineConfig:
    """The configuration with ``data.channel_files`` (image files per case) as ingest found it.

    Raises:
        DataError: cases with different numbers of image files (the channels would not match).
    """
    counts = sorted({len(c.images) for c in cases})
    if len(counts) > 1:
        by = {n: [c.id for c in cases if len(c.images) == n][:3] for n in counts}
        raise DataError(
            f"{cfg.data.root}: cases have {counts} image files each (for example {by}); every case needs "
            "the same channels"
        )
    if cfg.data.channel_files == counts[0]:
        return cfg
    data = cfg.data.model_copy(update={"channel_files": counts[0]})
    return cfg.model_copy(update={"data": data})


def resolve_statistics(cfg: PipelineConfig, cases: list[Case], run: RunDir) -> PipelineConfig:
    """The configuration with the ``ClipZScored`` statistics it leaves unset filled in.

    Statistics come from ``intensity_stats.json``; they are gathered over ``cases`` and written there
    when the file is absent or holds other percentiles.

    Args:
        cfg: the bound configuration.
        cases: the cases to gather over.
        run: the run folder.

    Returns:
        A new configuration, or ``cfg`` itself when nothing is unset.

    Raises:
        DataError: the cases have no foreground voxels.
    """
    percentiles = missing_statistics(cfg)
    if percentiles is None:
        return cfg
    stats = json.loads(run.intensity_stats.read_text()) if run.intensity_stats.is_file() else None
    if stats is None or tuple(stats.get("percentiles", ())) != percentiles:
        log.info("gathering foreground intensity statistics over %d training cases", len(cases))
        steps = [item["ClipZScored"] for item in cfg.transforms.preprocess if "ClipZScored" in item]
        stats = gather_foreground_stats(cfg, cases, percentiles, channels=steps[0].get("channels"))
        write_json(run.intensity_stats, stats)
    return with_statistics(cfg, stats)


def generate_synthetic(cfg: PipelineConfig) -> Path:
    """Write the configured synthetic set into a hidden folder beside ``data.root``, then rename it
    into place, so a run killed half-way leaves no partial set for later runs to use.

    Args:
        cfg: a configuration whose ``data.synthetic`` is set.

    Returns:
        ``data.root``.
    """
    spec = cfg.data.synthetic
    assert spec is not None
    root = Path(cfg.data.root)
    log.info("generating %d synthetic %s cases in %s", spec.n_cases, spec.kind, root)
    root.parent.mkdir(parents=True, exist_ok=True)
    for stale in root.parent.glob(f".{root.name}.partial-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    partial = root.parent / f".{root.name}.partial-{os.getpid()}"
    generate = generate_ct_dataset if spec.kind == "ct" else generate_dataset
    try:
        generate(cfg.data.model_copy(update={"root": partial}), spec)
        os.replace(partial, root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


# what a run writes before its folds train; a failed run removes those it wrote itself
SET_UP = (
    "config.yaml",
    "datalist.json",
    "splits.json",
    "intensity_stats.json",
    "provenance.json",
    "fingerprint.json",
    "preview.png",
)


@dataclass(frozen=True)
class Before:
    """What the run folder held when a command started."""

    folder: bool
    files: frozenset[str]
    folds: frozenset[str]


def before_run(run: RunDir) -> Before:
    """What the run folder holds now, for :func:`undo_set_up`."""
    files = frozenset(name for name in SET_UP if (run / name).exists())
    return Before(run.root.is_dir(), files, frozenset(f.name for f in run.folds()))


def undo_set_up(run: RunDir, before: Before) -> None:
    """After a failed run: when no fold has weights and no other run or fold job holds the folder,
    remove the set-up files (:data:`SET_UP`) and fold folders this command wrote, its free locks, and
    the folder itself when it made it and leaves it empty. ``run_state.json`` and the MLflow store
    stay (the record of the failed attempt); so does everything an earlier run wrote."""
    made: list[str] = []
    try:
        with run.running(None):  # alone in the folder: no fold job is using the files
            if run.has_models():
                return
            made = [name for name in SET_UP if name not in before.files and (run / name).exists()]
            for name in made:
                (run / name).unlink(missing_ok=True)
            for fold in run.folds():
                if fold.name not in before.folds:
                    shutil.rmtree(fold.path, ignore_errors=True)
    except (Busy, OSError):
        return
    if made:
        log.info("the run failed before training: removed %s from %s", ", ".join(made), run.root)
    remove_free(run.locks)
    if not before.folder:
        with contextlib.suppress(OSError):
            run.root.rmdir()
