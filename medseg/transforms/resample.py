"""Resampling to a target spacing, the nnU-Net way: the field of view is kept, the size is rounded.

New size = round(size x spacing / target). Images are interpolated (bi)linearly, labels with
nearest-exact, so both sample the same voxel centres. Inference resizes probabilities back to the
original size with the same rule, so a prediction lands exactly on the grid of its input.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medseg.transforms.keys import IMAGE_KEY, LABEL_KEY


def grid_size(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """Size of a ``shape`` grid of ``spacing`` resampled to ``target`` spacing.

    Example:
        >>> grid_size((512, 512, 20), (0.977, 0.977, 2.0), (1.5, 1.5, 3.0))
        (333, 333, 13)
    """
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target, strict=True))


def linear_mode(ndim: int) -> str:
    """``bilinear`` in 2D, ``trilinear`` in 3D."""
    return {1: "linear", 2: "bilinear", 3: "trilinear"}[ndim]


def resize(t: torch.Tensor, size: Sequence[int], is_label: bool) -> torch.Tensor:
    """Resize a channel-first tensor; labels nearest-exact (dtype kept), images (bi/tri)linear."""
    if tuple(t.shape[1:]) == tuple(size):
        return t
    x = torch.as_tensor(t).as_subclass(torch.Tensor)[None]
    if is_label:
        return F.interpolate(x.float(), size=tuple(size), mode="nearest-exact")[0].to(x.dtype)
    return F.interpolate(x.float(), size=tuple(size), mode=linear_mode(len(size)), align_corners=False)[0]


def scaled_affine(affine: np.ndarray, old: Sequence[int], new: Sequence[int]) -> np.ndarray:
    """Affine of the resized grid: same field of view, voxel centres moved accordingly."""
    n = len(old)
    scale = np.eye(4)
    for i in range(n):
        f = old[i] / new[i]
        scale[i, i] = f
        scale[i, 3] = (f - 1) / 2
    return np.asarray(affine) @ scale


class ResampleToSpacingd(MapTransform):
    """Resample ``image`` and ``label`` to ``spacing`` (mm) using the image's meta ``spacing``.

    Images are interpolated (bi/tri)linearly, labels by nearest neighbour, onto one grid.

    Args:
        keys: the keys resampled.
        spacing: the target voxel size in mm.
        allow_missing_keys: skip absent keys instead of failing.
    """

    def __init__(
        self, keys: KeysCollection = (IMAGE_KEY, LABEL_KEY), spacing: Sequence[float] = (1.0, 1.0, 1.0),
        allow_missing_keys: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(keys, allow_missing_keys)
        self.spacing = [float(s) for s in spacing]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[IMAGE_KEY]
        old = tuple(image.shape[1:])
        size = grid_size(old, [float(s) for s in np.asarray(image.meta["spacing"])], self.spacing)
        for key in self.key_iterator(d):
            x = d[key]
            out = resize(x, size, key == LABEL_KEY)
            meta = {k: v for k, v in x.meta.items() if k != "affine"} if isinstance(x, MetaTensor) else {}
            meta["spacing"] = np.asarray(old, float) * np.asarray(meta.get("spacing", 1.0)) / np.asarray(size)
            affine = x.affine.numpy() if isinstance(x, MetaTensor) else np.eye(4)
            new_affine = torch.as_tensor(scaled_affine(affine, old, size))
            d[key] = MetaTensor(out.contiguous(), affine=new_affine, meta=meta)
        return d
