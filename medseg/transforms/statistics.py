"""Foreground intensity statistics of the training cases, for nnU-Net's CT normalisation.

Gathered once at ingest and saved as ``intensity_stats.json`` in the run folder (reused by later
runs in the same folder): up to ``samples_per_case`` foreground voxels (label > 0, ignore value
excluded) are drawn per case with a fixed seed, as nnU-Net's dataset fingerprint does; the mean
and std are of those voxels, the clip bounds their ``percentiles``. The pipeline fills them into
every ``ClipZScored`` step left at null (:func:`medseg.config.load.with_statistics`), so the
resolved ``config.yaml`` records them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.errors import DataError, out_of_memory_named
from medseg.io.case import Case
from medseg.transforms.labels import foreground
from medseg.transforms.steps import load_transforms

log = logging.getLogger(__name__)


def gather_foreground_stats(
    cfg: PipelineConfig,
    cases: list[Case],
    percentiles: tuple[float, float],
    samples_per_case: int = 10000,
    channels: list[int] | None = None,
) -> dict[str, Any]:
    """Clip bounds at ``percentiles``, mean and std of the foreground voxels of ``cases``.

    Args:
        cfg: the configuration whose load steps read the cases.
        cases: the cases to gather over.
        percentiles: the lower and upper clip percentiles.
        samples_per_case: foreground voxels sampled per case, so large volumes do not dominate.
        channels: the channels whose values are pooled; default the first.

    Returns:
        ``lower``, ``upper``, ``mean``, ``std`` and the counts behind them.

    Raises:
        DataError: the cases have no foreground voxels.
    """
    from monai.transforms import Compose

    load = Compose(load_transforms(cfg.data, cfg.transforms))
    rng = np.random.default_rng(cfg.seed)
    samples = []
    for case in cases:
        with out_of_memory_named(f"intensity statistics of case {case.id}"):
            item = load(case.item())
            image = np.asarray(item["image"], dtype=np.float32)[channels or [0]]
            fg = foreground(np.asarray(item["label"])[0], cfg.data.ignore_value)
            values = image[:, fg].ravel()
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
