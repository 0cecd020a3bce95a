"""Post-processing chosen from cross-validation, as nnU-Net chooses it.

With ``infer.largest_component: auto`` every held-out case is also scored with two variants:
keeping the largest connected component of all foreground taken as one (``foreground``), and of
each class on its own (``each``). Once every fold is scored, ``foreground`` is adopted only if the
cross-validated mean Dice over classes rises and no class gets worse; otherwise each class whose
own mean Dice rises with ``each`` keeps only its largest component. The choice and the numbers
behind it go into ``postprocessing.json`` (and from there ``summary.json``, the report and the
run's ``config.yaml``), so ``medseg predict`` applies it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from medseg.infer.postprocess import keep_largest
from medseg.io.atomic import atomic_path

VARIANTS = ("none", "foreground", "each")


def largest_components(label: np.ndarray, classes: list[int], joint: bool) -> np.ndarray:
    """``label`` keeping the largest connected component of ``classes`` (joint: of their union)."""
    import torch

    if not classes:
        return label
    copy = torch.as_tensor(np.array(label))[None]  # a copy: MONAI edits in place
    return np.asarray(torch.as_tensor(keep_largest(copy, classes, joint))[0])


def dice(pred: np.ndarray, ref: np.ndarray, k: int, ignore: int | None = None) -> float:
    """Dice of class ``k``; NaN when both are empty (left out of means)."""
    keep = np.ones(ref.shape, bool) if ignore is None else ref != ignore
    p, r = (pred == k) & keep, (ref == k) & keep
    total = int(p.sum() + r.sum())
    return float("nan") if total == 0 else 2.0 * float((p & r).sum()) / total


def variant_rows(
    case_id: str, pred: np.ndarray, ref: np.ndarray, num_classes: int, ignore: int | None
) -> list[dict]:
    """One row per class: the case's Dice without post-processing and with each variant."""
    classes = list(range(1, num_classes))
    versions = {
        "none": pred,
        "foreground": largest_components(pred, classes, joint=True),
        "each": largest_components(pred, classes, joint=False),
    }
    return [
        {"case": case_id, "class": k, **{v: dice(versions[v], ref, k, ignore) for v in VARIANTS}}
        for k in classes
    ]


def write_variants(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case", "class", *VARIANTS])
        writer.writeheader()
        writer.writerows(rows)


def _read(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        with open(path, newline="") as fh:
            rows += [{k: float(v) if k != "case" else v for k, v in r.items()} for r in csv.DictReader(fh)]
    return rows


def choose(paths: list[Path]) -> dict[str, Any]:
    """The post-processing the cross-validated Dice supports.

    Args:
        paths: every fold's ``postprocessing.csv``.

    Returns:
        ``value`` (for ``infer.largest_component``: false, ``foreground`` or a list of classes),
        the mean Dice per class of each variant, and the reason.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "pp.csv"
        >>> write_variants(p, [{"case": "a", "class": 1, "none": 0.8, "foreground": 0.9, "each": 0.9}])
        >>> choose([p])["value"]
        'foreground'
    """
    rows = _read(paths)
    classes = sorted({int(r["class"]) for r in rows})
    means = {
        v: {str(k): float(np.nanmean([r[v] for r in rows if int(r["class"]) == k])) for k in classes}
        for v in VARIANTS
    }
    overall = {v: float(np.mean(list(means[v].values()))) for v in VARIANTS}
    base, fg = means["none"], means["foreground"]
    if overall["foreground"] > overall["none"] and all(fg[k] >= base[k] for k in base):
        value: Any = "foreground"
        reason = "largest component of all foreground: mean Dice rises and no class gets worse"
    else:
        value = [k for k in classes if means["each"][str(k)] > base[str(k)]] or False
        reason = (
            f"largest component of class(es) {value}: their own mean Dice rises"
            if value
            else "none: no variant raises the cross-validated Dice"
        )
    return {
        "value": value,
        "reason": reason,
        "mean_dice": means,
        "overall_mean_dice": overall,
        "n_rows": len(rows),
    }
