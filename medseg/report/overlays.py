"""Overlays of the worst held-out cases of a fold: image, reference outline, prediction outline.

Written to ``fold_k/overlays/<id>_dice<d>.png`` (3D: the axial slice with the most reference
foreground, shown the radiological way).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.data.datalist import Case
from medseg.evaluate.casewise import Row, worst_cases
from medseg.infer.heldout import read_prediction
from medseg.io.names import inside
from medseg.io.overlay import overlay_panels
from medseg.io.readers import RASTER, reader_by_name
from medseg.run_dir import FoldDir
from medseg.transforms.labels import foreground
from medseg.transforms.steps import load_transforms


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
    cfg: PipelineConfig, cases: list[Case], rows: list[Row], fold: FoldDir
) -> list[Path]:
    """Overlays of the fold's ``evaluate.n_worst`` cases by Dice, replacing earlier ones.

    Args:
        cfg: the resolved configuration.
        cases: the fold's held-out cases.
        rows: their metrics rows.
        fold: the fold folder whose predictions are drawn.

    Returns:
        The PNG files written.
    """
    from monai.transforms import Compose

    by_id = {c["id"]: c for c in cases}
    load = Compose(load_transforms(cfg))
    overlay_dir = fold.overlays
    if overlay_dir.is_dir():
        shutil.rmtree(overlay_dir)
    out = []
    for case_id in worst_cases(rows, cfg.evaluate.n_worst):
        item = load(dict(by_id[case_id]))
        image = np.asarray(item["image"], dtype=np.float32)
        ref = foreground(np.asarray(item["label"])[0], cfg.data.ignore_value)
        pred = read_prediction(fold.prediction(case_id, cfg.transforms.spatial_dims)) > 0
        img2d, ref2d, pred2d = display_slice(image, ref, pred)
        if reader_by_name(by_id[case_id]["image"]) is RASTER:  # scaled to [0, 1] at load: back to 8 bits
            img2d = (np.clip(img2d, 0, 1) * 255).astype(np.uint8)
        dice = np.mean([r["dice"] for r in rows if r["case"] == case_id])
        path = inside(overlay_dir, f"{case_id}_dice{0 if math.isnan(dice) else dice:.3f}.png")
        RASTER.write(path, overlay_panels(img2d, ref2d, pred2d))
        out.append(path)
    return out
