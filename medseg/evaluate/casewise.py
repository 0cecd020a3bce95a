"""Held-out evaluation of one fold: predict each case at its original size, score it, write files.

Writes ``fold_k/predictions/<id>.png`` (0/255 for two classes, class index otherwise),
``fold_k/metrics.csv`` (one row per case and class) and overlay PNGs of the worst cases by Dice
in ``fold_k/overlays/``.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.config import PipelineConfig
from medseg.data.datalist import Case
from medseg.evaluate.metrics import METRIC_NAMES, case_metrics
from medseg.evaluate.overlay import draw_overlay
from medseg.infer.sliding import make_inferer, predict_label
from medseg.io.atomic import atomic_path
from medseg.io.raster import read_raster, write_png
from medseg.transforms.labels import PrepareLabel, foreground

Row = dict[str, Any]
CSV_FIELDS = ["case", "label", *METRIC_NAMES]


def evaluate_cases(
    cfg: PipelineConfig, models: list[nn.Module], cases: list[Case], fold_dir: Path, device: torch.device
) -> list[Row]:
    from monai.data import Dataset

    dataset = Dataset(cases, transform=_original_size(cfg))
    inferer = make_inferer(cfg)
    rows: list[Row] = []
    pred_dir = fold_dir / "predictions"
    for i, case in enumerate(cases):
        item = dataset[i]
        pred = predict_label(models, item["image"], cfg, inferer, device).numpy().astype(np.uint8)
        ref = np.asarray(item["label"])[0]
        scale = 255 if cfg.data.num_classes == 2 else 1
        write_png(pred_dir / f"{case['id']}.png", (pred * scale).astype(np.uint8))
        for label in range(1, cfg.data.num_classes):
            m = case_metrics(
                pred,
                ref,
                label=label,
                nsd_tolerance=cfg.evaluate.nsd_tolerance,
                jaccard_threshold=cfg.evaluate.jaccard_threshold,
                ignore_value=cfg.data.ignore_value,
            )
            rows.append({"case": case["id"], "label": label, **m})
    write_metrics_csv(fold_dir / "metrics.csv", rows)
    write_worst_overlays(cfg, cases, rows, fold_dir)
    return rows


def _original_size(cfg: PipelineConfig) -> Any:
    from medseg.transforms.chain import original_size_transforms

    return original_size_transforms(cfg)


def write_metrics_csv(path: Path, rows: list[Row]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k]) for k in CSV_FIELDS}
            )


def read_metrics_csv(path: Path) -> list[Row]:
    with open(path, newline="") as fh:
        return [
            {k: (v if k == "case" else int(v) if k == "label" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def worst_cases(rows: list[Row], n: int) -> list[str]:
    """Case ids ordered from the lowest mean Dice over classes, ``n`` of them."""
    by_case: dict[str, list[float]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row["dice"])
    ranked = sorted(by_case, key=lambda c: (float(np.mean(by_case[c])), c))
    return ranked[:n]


def write_worst_overlays(
    cfg: PipelineConfig, cases: list[Case], rows: list[Row], fold_dir: Path
) -> list[Path]:
    by_id = {c["id"]: c for c in cases}
    prepare = PrepareLabel(cfg.data.num_classes, cfg.data.binarize_threshold, cfg.data.ignore_value)
    overlay_dir = fold_dir / "overlays"
    if overlay_dir.is_dir():
        shutil.rmtree(overlay_dir)
    out = []
    for case_id in worst_cases(rows, cfg.evaluate.n_worst):
        case = by_id[case_id]
        image = read_raster(case["image"])
        ref = prepare(read_raster(case["label"]))
        pred = read_raster(fold_dir / "predictions" / f"{case_id}.png")
        dice = np.mean([r["dice"] for r in rows if r["case"] == case_id])
        path = overlay_dir / f"{case_id}_dice{0 if math.isnan(dice) else dice:.3f}.png"
        write_png(path, draw_overlay(image, foreground(ref, cfg.data.ignore_value), pred > 0))
        out.append(path)
    return out
