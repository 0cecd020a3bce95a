"""Per-case segmentation metrics for one class: Dice, IoU, thresholded Jaccard, HD95, Surface Dice.

Definitions (also printed in every report):
- Dice = 2|P & R| / (|P| + |R|); IoU = |P & R| / |P | R|.
- Thresholded Jaccard (ISIC 2018): IoU when IoU >= threshold (0.65), else 0.
- HD95: the larger of the two directed 95th-percentile surface distances (equal to MONAI's
  ``compute_hausdorff_distance(percentile=95)``, as in DeepMind's surface-distance).
- Surface Dice (NSD) at tolerance tau: DeepMind's surfel definition (equal to MONAI's
  ``compute_surface_dice(use_subvoxels=True)``).
Both are computed by :mod:`medseg.evaluate.surface` with a distance transform on the cropped union.
Distances are in the units of ``spacing``: mm for DICOM and NIfTI, pixels for PNG/JPEG.

Empty masks: both empty gives Dice 1, IoU 1, HD95 0, NSD 1; exactly one empty gives Dice 0,
IoU 0, NSD 0 and HD95 = inf (counted, never dropped silently). Pixels equal to the ignore value
in the reference are removed from both masks first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("dice", "iou", "jaccard_thresholded", "hd95", "nsd")
HIGHER_IS_BETTER = {"dice": True, "iou": True, "jaccard_thresholded": True, "hd95": False, "nsd": True}


def surface_metrics(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], tolerance: float
) -> tuple[float, float]:
    """(HD95, NSD) for two non-empty boolean masks (:mod:`medseg.evaluate.surface`, equal to MONAI)."""
    from medseg.evaluate.surface import hausdorff_percentile, surface_dice

    return hausdorff_percentile(pred, ref, spacing, 95), surface_dice(pred, ref, spacing, tolerance)


def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    label: int = 1,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float = 2.0,
    jaccard_threshold: float = 0.65,
    ignore_value: int | None = None,
) -> dict[str, float]:
    """Metrics of class ``label`` for one case; ``pred`` and ``ref`` are integer label maps.

    Example:
        >>> ref = np.zeros((8, 8), int); ref[2:6, 2:6] = 1
        >>> pred = np.zeros((8, 8), int); pred[2:6, 2:4] = 1
        >>> round(case_metrics(pred, ref)["dice"], 4)
        0.6667
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    valid = np.ones(ref.shape, bool) if ignore_value is None else ref != ignore_value
    p = (pred == label) & valid
    r = (ref == label) & valid
    spacing = list(spacing) if spacing is not None else [1.0] * ref.ndim
    n_p, n_r = int(p.sum()), int(r.sum())
    if n_p == 0 and n_r == 0:
        return {"dice": 1.0, "iou": 1.0, "jaccard_thresholded": 1.0, "hd95": 0.0, "nsd": 1.0}
    if n_p == 0 or n_r == 0:
        return {"dice": 0.0, "iou": 0.0, "jaccard_thresholded": 0.0, "hd95": math.inf, "nsd": 0.0}
    inter = int((p & r).sum())
    dice = 2 * inter / (n_p + n_r)
    iou = inter / (n_p + n_r - inter)
    hd95, nsd = surface_metrics(p, r, spacing, nsd_tolerance)
    return {
        "dice": dice,
        "iou": iou,
        "jaccard_thresholded": iou if iou >= jaccard_threshold else 0.0,
        "hd95": hd95,
        "nsd": nsd,
    }


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, std and median over finite values, plus how many were infinite or missing."""
    arr = np.asarray(values, float)
    finite = arr[np.isfinite(arr)]
    stats: dict[str, float | int] = {
        "n": int(arr.size),
        "n_infinite": int(np.isinf(arr).sum()),
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std()) if finite.size else math.nan,
        "median": float(np.median(finite)) if finite.size else math.nan,
    }
    return stats
