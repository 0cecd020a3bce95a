"""Foreground intensity statistics of the training cases, for nnU-Net's CT normalisation.

Gathered once at ingest and saved as ``intensity_stats.json`` in the run folder (reused by later
runs in the same folder): up to ``samples_per_case`` foreground voxels (label > 0, ignore value
excluded) are drawn per case with a fixed seed, as nnU-Net's dataset fingerprint does; the mean
and std are of those voxels, the clip bounds their ``percentiles``. ``fill_clip_zscore`` writes the
values into every ``ClipZScored`` step left at null, so the resolved ``config.yaml`` records them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import PipelineConfig
from medseg.data.datalist import Case
from medseg.errors import DataError
from medseg.io.atomic import write_json
from medseg.transforms.labels import foreground

log = logging.getLogger(__name__)

STATS_FILE = "intensity_stats.json"
STAT_KEYS = ("lower", "upper", "mean", "std")


def gather_foreground_stats(
    cfg: PipelineConfig, cases: list[Case], percentiles: tuple[float, float], samples_per_case: int = 10000
) -> dict[str, Any]:
    from monai.transforms import Compose

    from medseg.transforms.chain import load_transforms

    load = Compose(load_transforms(cfg))
    rng = np.random.default_rng(cfg.seed)
    samples = []
    for case in cases:
        item = load({"image": case["image"], "label": case["label"]})
        image = np.asarray(item["image"], dtype=np.float32)[0]
        fg = foreground(np.asarray(item["label"])[0], cfg.data.ignore_value)
        values = image[fg]
        if values.size > samples_per_case:
            values = rng.choice(values, samples_per_case, replace=False)
        samples.append(values)
    pooled = np.concatenate(samples) if samples else np.zeros(0, np.float32)
    if pooled.size == 0:
        raise DataError("ClipZScored: no foreground voxels in the training cases to gather statistics from")
    lower, upper = np.percentile(pooled, percentiles)
    return {
        "percentiles": list(percentiles),
        "lower": float(lower),
        "upper": float(upper),
        "mean": float(pooled.mean()),
        "std": float(pooled.std()),
        "n_voxels": int(pooled.size),
        "n_cases": len(cases),
    }


def fill_clip_zscore(cfg: PipelineConfig, cases: list[Case], run_dir: Path) -> dict[str, Any] | None:
    """Fill null ClipZScored statistics from ``run_dir/intensity_stats.json``, gathering it if absent."""
    steps = [item["ClipZScored"] for item in cfg.transforms.preprocess if "ClipZScored" in item]
    todo = [args for args in steps if any(args.get(k) is None for k in STAT_KEYS)]
    if not todo:
        return None
    percentiles = tuple(float(p) for p in todo[0].get("percentiles", (0.5, 99.5)))
    path = run_dir / STATS_FILE
    stats = json.loads(path.read_text()) if path.is_file() else None
    if stats is None or tuple(stats.get("percentiles", ())) != percentiles:
        log.info("gathering foreground intensity statistics over %d training cases", len(cases))
        stats = gather_foreground_stats(cfg, cases, percentiles)  # type: ignore[arg-type]
        write_json(path, stats)
    for args in todo:
        for key in STAT_KEYS:
            if args.get(key) is None:
                args[key] = stats[key]
    return stats
