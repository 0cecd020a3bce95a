"""Held-out prediction of one fold: each case predicted on its reference grid, written to a file.

Writes ``fold_k/predictions/<id>.png`` for 2D workflows (0/255 for two classes, class index
otherwise) or ``<id>.nii.gz`` for 3D (on the canonical RAS grid of the input). Each case is handed
on with its reference label and spacing, so :mod:`medseg.evaluate` scores it without reading the
files again. Labels stay uint8 from reader to score, and a case's image is let go before it is
scored, so memory holds one case's arrays at a time; a case that does not fit is named, with what
to do, rather than an unexpected MemoryError.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.chains import original_size_transforms
from medseg.config.models import PipelineConfig
from medseg.errors import out_of_memory_named
from medseg.infer.sliding import image_spacing, predict_label_scored
from medseg.io.case import Case
from medseg.io.readers import NIFTI, RASTER
from medseg.registry import build_inferer
from medseg.run_dir import FoldDir


@dataclass
class HeldOutCase:
    """A held-out case predicted on its reference grid.

    Attributes:
        case_id: the case.
        pred: the predicted label map.
        ref: the reference label map, same grid.
        spacing: voxel size in mm, or None for pictures without one.
        path: where the prediction was written.
        uncertainty: the disagreement of its test-time flips (NaN when not scored).
    """

    case_id: str
    pred: np.ndarray  # class indices (uint8)
    ref: np.ndarray  # reference classes, ignore value kept
    spacing: list[float] | None  # mm, or pixels for PNG/JPEG
    path: Path  # the prediction file
    uncertainty: float = float("nan")


def predict_heldout(
    cfg: PipelineConfig, models: list[nn.Module], cases: list[Case], fold: FoldDir, device: torch.device
) -> Iterator[HeldOutCase]:
    """Predict ``cases`` one at a time with ``models`` (mean softmax), write each prediction file.

    Args:
        cfg: the resolved pipeline configuration.
        models: networks in eval mode on ``device``.
        cases: the fold's held-out cases (``id``, ``image``, ``label``).
        fold: where ``predictions/`` goes.
        device: where inference runs.

    Yields:
        Each case's prediction, reference and spacing, in the order of ``cases``.
    """
    from monai.data import Dataset

    dataset = Dataset([c.item() for c in cases], transform=original_size_transforms(cfg.data, cfg.transforms))
    inferer = build_inferer(cfg.infer, cfg.roi_size)
    for i, case in enumerate(cases):
        with out_of_memory_named(f"{fold.name}: held-out case {case.id}"):
            item = dataset[i]
            label, score = predict_label_scored(
                models, item["image"], cfg, inferer, device, cfg.evaluate.uncertainty
            )
            pred = np.asarray(label.numpy(), dtype=np.uint8)  # no copy: class_argmax gives uint8
            path = write_prediction(
                cfg, fold.prediction(case.id, cfg.transforms.spatial_dims), pred, item["image"]
            )
            ref, spacing = np.asarray(item["label"])[0], image_spacing(item["image"])
            del item, label  # the image goes before scoring: one picture's arrays at a time
        yield HeldOutCase(case.id, pred, ref, spacing, path, score)


def write_prediction(cfg: PipelineConfig, path: Path, pred: np.ndarray, image: Any) -> Path:
    """PNG (0/255 for one class, class values otherwise) in 2D, NIfTI on the image's affine in 3D."""
    if cfg.transforms.spatial_dims == 2:
        scale = 255 if cfg.data.num_classes == 2 else 1
        RASTER.write(path, (pred * scale).astype(np.uint8))
    else:
        NIFTI.write(path, pred.astype(np.uint8), np.asarray(image.affine, dtype=float))
    return path


def read_prediction(path: Path) -> np.ndarray:
    """A held-out prediction file as written (PNG as stored, NIfTI on its canonical grid)."""
    reader = NIFTI if NIFTI.matches(path) else RASTER
    return reader.read_3d(path)[0] if reader is NIFTI else reader.read_2d(path)[0]
