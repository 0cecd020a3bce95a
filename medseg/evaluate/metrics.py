"""Per-case segmentation metrics for one class, 2D or 3D, with the voxel spacing in mm.

Definitions (also printed in every report):
- Dice = 2|P & R| / (|P| + |R|); IoU = |P & R| / |P | R|.
- Thresholded Jaccard (ISIC 2018): IoU when IoU >= threshold (0.65), else 0.
- HD95: the larger of the two directed 95th-percentile surface distances (MONAI's
  ``compute_hausdorff_distance(percentile=95)`` and DeepMind's surface-distance; MedPy pools both
  directions into one percentile instead, which differs, by a factor of three when a false-positive
  blob is present). HD: the larger of the two directed maxima.
- ASSD: the mean of the surface distances of both directions pooled (MONAI's
  ``compute_average_surface_distance(symmetric=True)``).
- Surface Dice (NSD) at tolerance tau: DeepMind's surfel definition (MONAI's
  ``compute_surface_dice(use_subvoxels=True)``).
Surface metrics are computed by :mod:`medseg.evaluate.surface` (distance transform on the cropped
union) and tested equal to MONAI's. Distances are in the units of ``spacing``: mm for DICOM and
NIfTI, pixels for PNG/JPEG.

Empty masks: both empty gives Dice 1, IoU 1, HD95/HD/ASSD 0, NSD 1; exactly one empty gives Dice 0,
IoU 0, NSD 0 and HD95/HD/ASSD = inf. Infinite values are counted, never dropped silently: summaries
give the mean over finite cases, the count of infinite ones, and a capped mean in which an
infinite distance counts as the image diagonal (the worst possible). Pixels equal to the ignore
value in the reference are removed from both masks first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from medseg.evaluate.surface import surface_metrics

METRIC_NAMES = ("dice", "iou", "jaccard_thresholded", "hd95", "hd", "assd", "nsd")
DISTANCE_METRICS = ("hd95", "hd", "assd")
HIGHER_IS_BETTER = {m: m not in DISTANCE_METRICS for m in METRIC_NAMES}


DEFINITIONS = {
    "dice": "2|P∩R| / (|P|+|R|); 1 when both masks are empty, 0 when exactly one is",
    "iou": "|P∩R| / |P∪R|; same empty-mask rules as Dice",
    "jaccard_thresholded": "ISIC 2018: IoU when IoU >= 0.65 (evaluate.jaccard_threshold), else 0",
    "hd95": "the larger of the two directed 95th-percentile surface distances, prediction to reference "
    "and reference to prediction (MONAI and DeepMind surface-distance definition; MedPy's pooled "
    "percentile is a different, lower number when a false-positive blob is present)",
    "hd": "the larger of the two directed maximum surface distances (Hausdorff distance)",
    "assd": "mean of the surface distances of both directions pooled (average symmetric surface distance)",
    "nsd": "Surface Dice at the tolerance of evaluate.nsd_tolerance, DeepMind surfel definition (MONAI "
    "compute_surface_dice with use_subvoxels=True); 1 when both masks are empty, 0 when exactly one is",
    "distances": "in mm for DICOM and NIfTI, in pixels for PNG/JPEG; 0 when both masks are empty, "
    "infinite when exactly one is: means are over finite cases, the infinite ones are counted, and "
    "'capped' is the mean with each infinite distance replaced by the image diagonal",
}


def diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length of the image diagonal in the units of ``spacing``: the cap for infinite distances."""
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True))))


def case_metrics(
    pred: np.ndarray,
    ref: np.ndarray,
    label: int = 1,
    spacing: Sequence[float] | None = None,
    nsd_tolerance: float = 2.0,
    jaccard_threshold: float = 0.65,
    ignore_value: int | None = None,
) -> dict[str, float]:
    """Metrics of class ``label`` for one case.

    Args:
        pred: integer label map predicted.
        ref: integer reference label map, same shape.
        label: the class to score.
        spacing: voxel size in mm per axis (1 mm when None).
        nsd_tolerance: the Surface Dice tolerance in mm.
        jaccard_threshold: IoU below which a case counts as failed (ISIC's thresholded Jaccard).
        ignore_value: reference value whose voxels are left out of every metric.

    Returns:
        Dice, IoU, thresholded IoU, HD95, HD, ASSD and NSD, with the voxel counts and the image
        diagonal; both masks empty score 1 (distances 0), one empty scores 0 (distances inf).

    Raises:
        ValueError: the shapes differ, or ``spacing`` has the wrong length.

    Example:
        >>> ref = np.zeros((8, 8), int); ref[2:6, 2:6] = 1
        >>> pred = np.zeros((8, 8), int); pred[2:6, 2:4] = 1
        >>> round(case_metrics(pred, ref)["dice"], 4)
        0.6667
    """

    p, r, spacing = _class_masks(pred, ref, label, spacing, ignore_value)
    n_p, n_r = int(p.sum()), int(r.sum())
    out: dict[str, float] = {"ref_voxels": n_r, "pred_voxels": n_p, "diagonal": diagonal(ref.shape, spacing)}
    if n_p == 0 or n_r == 0:  # both empty score 1, one empty 0
        score, distance = (1.0, 0.0) if n_p == n_r else (0.0, math.inf)
        return {**out, "dice": score, "iou": score, "jaccard_thresholded": score, "nsd": score} | {
            m: distance for m in DISTANCE_METRICS
        }
    inter = int((p & r).sum())
    dice = 2 * inter / (n_p + n_r)
    iou = inter / (n_p + n_r - inter)
    return {
        **out,
        "dice": dice,
        "iou": iou,
        "jaccard_thresholded": iou if iou >= jaccard_threshold else 0.0,
        **surface_metrics(p, r, spacing, nsd_tolerance),
    }


def _class_masks(
    pred: np.ndarray, ref: np.ndarray, label: int, spacing: Sequence[float] | None, ignore: int | None
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Class ``label`` of the prediction and the reference, ignored voxels left out of both, and the
    spacing checked (1 mm per axis when None)."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    valid = np.ones(ref.shape, bool) if ignore is None else ref != ignore
    spacing = list(spacing) if spacing is not None else [1.0] * ref.ndim
    if len(spacing) != ref.ndim:
        raise ValueError(f"spacing {spacing} has {len(spacing)} values for a {ref.ndim}D image")
    return (pred == label) & valid, (ref == label) & valid, spacing


def summarize(values: Sequence[float], caps: Sequence[float] | None = None) -> dict[str, float | int]:
    """Mean, std and median over finite values, how many were infinite, and (with ``caps``, one per
    value) the mean with each infinite value replaced by its cap."""
    arr = np.asarray(values, float)
    finite = arr[np.isfinite(arr)]
    stats: dict[str, float | int] = {
        "n": int(arr.size),
        "n_infinite": int(np.isinf(arr).sum()),
        "mean": float(finite.mean()) if finite.size else math.nan,
        "std": float(finite.std()) if finite.size else math.nan,
        "median": float(np.median(finite)) if finite.size else math.nan,
    }
    if caps is not None and arr.size:
        capped = np.minimum(np.where(np.isinf(arr), np.asarray(caps, float), arr), np.asarray(caps, float))
        capped = capped[~np.isnan(capped)]
        stats["capped_mean"] = float(capped.mean()) if capped.size else math.nan
    return stats


def summarize_rows(rows: Sequence[dict]) -> dict[str, dict[str, float | int]]:
    """Per-metric summaries of the rows of one class; distances also get the diagonal-capped mean.
    ``counts`` holds how many cases had an empty reference or prediction."""
    out: dict[str, dict[str, float | int]] = {}
    for m in METRIC_NAMES:
        values = [float(r.get(m, math.nan)) for r in rows]
        caps = [float(r.get("diagonal", math.inf)) for r in rows] if m in DISTANCE_METRICS else None
        out[m] = summarize(values, caps)
    out["counts"] = {
        "n": len(rows),
        "ref_empty": sum(1 for r in rows if float(r.get("ref_voxels", 1)) == 0),
        "pred_empty": sum(1 for r in rows if float(r.get("pred_voxels", 1)) == 0),
    }
    return out
