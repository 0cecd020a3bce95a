"""Per-case scores: one row per case and class, written to and read from ``metrics.csv``.

Distances are in mm (pixels for PNG/JPEG); the metric definitions are in
:mod:`medseg.evaluate.metrics`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.evaluate.metrics import METRIC_NAMES, case_metrics
from medseg.io.atomic import atomic_path

Row = dict[str, Any]
CSV_FIELDS = ["case", "label", *METRIC_NAMES, "ref_voxels", "pred_voxels", "diagonal"]


def score_case(
    cfg: PipelineConfig, case_id: str, pred: np.ndarray, ref: np.ndarray, spacing: list[float] | None
) -> list[Row]:
    """One row per foreground class of a held-out case, scored on its reference grid.

    Args:
        cfg: the resolved pipeline configuration (classes, tolerances, ignore value).
        case_id: the case's id.
        pred: predicted classes.
        ref: reference classes, the ignore value kept.
        spacing: voxel spacing in mm (pixels for PNG/JPEG), or None for 1.

    Returns:
        Rows of ``case``, ``label`` and every metric.
    """
    rows = []
    for label in range(1, cfg.data.num_classes):
        m = case_metrics(
            pred,
            ref,
            label=label,
            spacing=spacing,
            nsd_tolerance=cfg.nsd_tolerance(label),
            jaccard_threshold=cfg.evaluate.jaccard_threshold,
            ignore_value=cfg.data.ignore_value,
        )
        rows.append({"case": case_id, "label": label, **m})
    return rows


def write_metrics_csv(path: Path, rows: list[Row]) -> None:
    """Write per-case rows to ``metrics.csv`` atomically, floats with six decimals."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6f}" if isinstance(v := row.get(k, ""), float) else v) for k in CSV_FIELDS}
            )


def read_metrics_csv(path: Path) -> list[Row]:
    """Rows of a ``metrics.csv``: ``case`` as text, ``label`` as int, metrics as float."""
    with open(path, newline="") as fh:
        return [
            {
                k: (v if k == "case" else int(v) if k == "label" else float(v))
                for k, v in row.items()
                if v != ""
            }
            for row in csv.DictReader(fh)
        ]


def worst_cases(rows: list[Row], n: int) -> list[str]:
    """Case ids ordered from the lowest mean Dice over classes, ``n`` of them."""
    by_case: dict[str, list[float]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row["dice"])
    ranked = sorted(by_case, key=lambda c: (float(np.mean(by_case[c])), c))
    return ranked[:n]
