"""Predictions made on the reference grid, put back on the grid of the input as stored.

3D: the reference grid is the canonical RAS+ reorientation of the source, so going back is a pure
axis permutation and flip (:func:`medseg.io.geometry.reorient`); nothing is interpolated. 2D
mammography: the reference grid is the picture flipped to one side, cropped to the breast and
capped in size, so probabilities are resized (bilinear) to the crop, pasted into the full picture
(background outside it) and flipped back; only then is the argmax taken. Other 2D inputs are read
on their source grid already.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medseg.io.geometry import reorient


def probabilities_to_source_2d(probs: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """(C, h, w) probabilities on the reference grid -> (C, H, W) on the stored picture."""
    import torch.nn.functional as F

    box = meta.get("crop_box")
    full = tuple(int(v) for v in meta.get("source_shape", probs.shape[1:]))
    if box is None:
        return probs
    r0, r1, c0, c1 = (int(v) for v in box)
    crop = probs
    if tuple(crop.shape[1:]) != (r1 - r0, c1 - c0):
        crop = F.interpolate(crop[None], size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)[0]
    out = torch.zeros((probs.shape[0], *full), dtype=probs.dtype)
    out[0] = 1.0  # background outside the breast crop
    out[:, r0:r1, c0:c1] = crop
    if meta.get("flipped"):
        out = out.flip(-1)
    return out


def label_to_source_3d(
    label: np.ndarray, canonical_affine: np.ndarray, source_affine: np.ndarray
) -> np.ndarray:
    """A label map on the canonical grid in the voxel order of the source (same voxels, other axes)."""

    return reorient(label, canonical_affine, source_affine)
