"""The stages of a study before training: ingest, splits and intensity statistics.

Each writes its file into the run folder (:mod:`medseg.run_dir`) and can be re-run from its
inputs: ``datalist.json``, ``splits.json``, ``intensity_stats.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from medseg.config.load import missing_statistics, with_statistics
from medseg.config.models import PipelineConfig
from medseg.data.datalist import BadCase, build_datalist
from medseg.data.synthetic import generate_dataset
from medseg.data.synthetic_ct import generate_ct_dataset
from medseg.errors import DataError
from medseg.io.atomic import write_json
from medseg.io.case import Case
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
        DataError: a missing folder, or bad cases while ``data.on_bad_case`` is ``stop``.
    """
    if cfg.data.synthetic is not None and not Path(cfg.data.root).exists():
        generate_synthetic(cfg)
    cases, bad = build_datalist(cfg.data, cfg.transforms.spatial_dims, cfg.image_channels)
    RunDir(run_dir).write_datalist(Path(cfg.data.root), cases, bad)
    log.info("ingest: %d cases, %d skipped", len(cases), len(bad))
    return cases, bad


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
