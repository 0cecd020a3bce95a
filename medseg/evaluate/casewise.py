"""Per-case scores: one row per case and class, written to and read from ``metrics.csv``.

Each row names its class (``data.labels``, ``data.class_names``, else ``class_<k>``) and may carry
the case's ``uncertainty`` (:mod:`medseg.evaluate.uncertainty`). Distances are in mm (pixels for
PNG/JPEG); the metric definitions are in :mod:`medseg.evaluate.metrics`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.evaluate.metrics import METRIC_NAMES, case_metrics, summarize_rows
from medseg.io.atomic import atomic_path

Row = dict[str, Any]
CSV_FIELDS = [
    "case",
    "label",
    "class",
    *METRIC_NAMES,
    "ref_voxels",
    "pred_voxels",
    "ref_volume",
    "pred_volume",
    "diagonal",
    "uncertainty",
]
TEXT_FIELDS = ("case", "class")
CLASS_MEAN = "mean"  # the mean over classes, in summaries and metric names; no class may be named so


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
        Rows of ``case``, ``label``, ``class``, every metric and the reference and predicted
        volumes (voxels times the voxel size: mm³, mm² for 2D DICOM, pixels for pictures).
    """
    rows = []
    voxel = float(np.prod(spacing)) if spacing is not None else 1.0
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
        volumes = {"ref_volume": m["ref_voxels"] * voxel, "pred_volume": m["pred_voxels"] * voxel}
        rows.append({"case": case_id, "label": label, "class": cfg.class_names[label], **m, **volumes})
    return rows


def class_name(row: Row) -> str:
    """The row's class name; ``class_<k>`` in a ``metrics.csv`` written before names were kept."""
    return str(row.get("class") or f"class_{row['label']}")


def case_means(rows: list[Row]) -> list[Row]:
    """One row per case with each metric's mean over the case's classes (a distance is infinite when
    any class's is), the voxel counts summed and the case's uncertainty kept."""
    by_case: dict[str, list[Row]] = {}
    for r in rows:
        by_case.setdefault(r["case"], []).append(r)
    out = []
    for case, group in by_case.items():
        row: Row = {"case": case, "label": 0, "class": CLASS_MEAN}
        for m in METRIC_NAMES:
            row[m] = float(np.mean([float(r.get(m, np.nan)) for r in group]))
        for key in ("ref_voxels", "pred_voxels", "ref_volume", "pred_volume"):
            if all(key in r for r in group):
                row[key] = float(sum(float(r[key]) for r in group))
        row["diagonal"] = float(group[0].get("diagonal", np.inf))
        if "uncertainty" in group[0]:
            row["uncertainty"] = float(group[0]["uncertainty"])
        out.append(row)
    return out


def class_summaries(rows: list[Row]) -> dict[str, Any]:
    """Summaries (:func:`medseg.evaluate.metrics.summarize_rows`) per class name, in label order,
    and of the per-case class means under ``mean``."""
    labels = sorted({(int(r["label"]), class_name(r)) for r in rows})
    out = {name: summarize_rows([r for r in rows if r["label"] == label]) for label, name in labels}
    out[CLASS_MEAN] = summarize_rows(case_means(rows))
    return out


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
                k: (v if k in TEXT_FIELDS else int(v) if k == "label" else float(v))
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
