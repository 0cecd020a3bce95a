"""Held-out evaluation of one fold: predict each case on its reference grid, score it, write files.

Writes ``fold_k/predictions/<id>.png`` for 2D workflows (0/255 for two classes, class index
otherwise) or ``<id>.nii.gz`` for 3D (on the canonical RAS grid of the input),
``fold_k/metrics.csv`` (one row per case and class, distances in mm, pixels for PNG/JPEG) and
overlay PNGs of the worst cases by Dice in ``fold_k/overlays/`` (3D: the axial slice with the most
reference foreground).
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
from medseg.evaluate.overlay import overlay_panels
from medseg.infer.sliding import image_spacing, make_inferer, predict_label
from medseg.io.atomic import atomic_path
from medseg.io.raster import write_png
from medseg.transforms.labels import foreground

Row = dict[str, Any]
CSV_FIELDS = ["case", "label", *METRIC_NAMES, "ref_voxels", "pred_voxels", "diagonal"]


def evaluate_cases(
    cfg: PipelineConfig, models: list[nn.Module], cases: list[Case], fold_dir: Path, device: torch.device
) -> list[Row]:
    from monai.data import Dataset

    from medseg.transforms.chain import original_size_transforms

    dataset = Dataset(cases, transform=original_size_transforms(cfg))
    inferer = make_inferer(cfg)
    rows: list[Row] = []
    for i, case in enumerate(cases):
        item = dataset[i]
        pred = predict_label(models, item["image"], cfg, inferer, device).numpy().astype(np.uint8)
        ref = np.asarray(item["label"])[0]
        spacing = image_spacing(item["image"])
        write_prediction(cfg, fold_dir, case["id"], pred, item["image"])
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
            rows.append({"case": case["id"], "label": label, **m})
    write_metrics_csv(fold_dir / "metrics.csv", rows)
    write_worst_overlays(cfg, cases, rows, fold_dir)
    return rows


def prediction_path(cfg: PipelineConfig, fold_dir: Path, case_id: str) -> Path:
    suffix = ".png" if cfg.transforms.spatial_dims == 2 else ".nii.gz"
    return fold_dir / "predictions" / f"{case_id}{suffix}"


def write_prediction(cfg: PipelineConfig, fold_dir: Path, case_id: str, pred: np.ndarray, image: Any) -> Path:
    path = prediction_path(cfg, fold_dir, case_id)
    if cfg.transforms.spatial_dims == 2:
        scale = 255 if cfg.data.num_classes == 2 else 1
        write_png(path, (pred * scale).astype(np.uint8))
    else:
        from medseg.io.volume import write_nifti

        write_nifti(path, pred.astype(np.uint8), np.asarray(image.affine, dtype=float))
    return path


def read_prediction(path: Path) -> np.ndarray:
    if path.name.endswith(".nii.gz"):
        import nibabel as nib

        return np.asarray(nib.load(str(path)).dataobj)  # type: ignore[attr-defined]
    from medseg.io.raster import read_raster

    return read_raster(path)


def write_metrics_csv(path: Path, rows: list[Row]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6f}" if isinstance(v := row.get(k, ""), float) else v) for k in CSV_FIELDS}
            )


def read_metrics_csv(path: Path) -> list[Row]:
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


def display_slice(image: np.ndarray, ref: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, ...]:
    """2D pictures for an overlay: (H, W[, C]) image, reference and prediction.

    3D volumes (x, y, z in RAS+) show the axial slice with the most reference foreground (the
    prediction's when the reference is empty), turned so anterior is up and the patient's right
    is on the left of the picture, as radiologists view it.
    """
    if ref.ndim == 2:
        img = np.moveaxis(image, 0, -1)
        return (img[..., 0] if img.shape[-1] == 1 else img), ref, pred
    counts = ref.reshape(-1, ref.shape[-1]).sum(0) if ref.any() else pred.reshape(-1, pred.shape[-1]).sum(0)
    z = int(np.argmax(counts))
    turn = lambda a: np.rot90(a[..., z])[:, ::-1]  # noqa: E731  (rows: anterior first; columns: right first)
    return turn(image[0]), turn(ref), turn(pred)


def write_worst_overlays(
    cfg: PipelineConfig, cases: list[Case], rows: list[Row], fold_dir: Path
) -> list[Path]:
    from monai.transforms import Compose

    from medseg.io.volume import kind_of
    from medseg.transforms.chain import load_transforms

    by_id = {c["id"]: c for c in cases}
    load = Compose(load_transforms(cfg))
    overlay_dir = fold_dir / "overlays"
    if overlay_dir.is_dir():
        shutil.rmtree(overlay_dir)
    out = []
    for case_id in worst_cases(rows, cfg.evaluate.n_worst):
        item = load(dict(by_id[case_id]))
        image = np.asarray(item["image"], dtype=np.float32)
        ref = foreground(np.asarray(item["label"])[0], cfg.data.ignore_value)
        pred = read_prediction(prediction_path(cfg, fold_dir, case_id)) > 0
        img2d, ref2d, pred2d = display_slice(image, ref, pred)
        if kind_of(by_id[case_id]["image"]) == "raster":  # scaled to [0, 1] at load: back to 8 bits
            img2d = (np.clip(img2d, 0, 1) * 255).astype(np.uint8)
        dice = np.mean([r["dice"] for r in rows if r["case"] == case_id])
        path = overlay_dir / f"{case_id}_dice{0 if math.isnan(dice) else dice:.3f}.png"
        write_png(path, overlay_panels(img2d, ref2d, pred2d))
        out.append(path)
    return out
