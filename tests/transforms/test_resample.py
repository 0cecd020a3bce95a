"""Resampling to a spacing keeps image and label aligned and inverts exactly on the grid."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from medseg.transforms.resample import ResampleToSpacingd, grid_size, resize, scaled_affine


def _block(shape, lo, hi):
    x = np.zeros(shape, np.float32)
    x[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = 1
    return x


def test_grid_size_rounds_like_nnunet():
    assert grid_size((512, 512, 20), (0.9765625, 0.9765625, 2.0), (1.5, 1.5, 3.0)) == (333, 333, 13)
    assert grid_size((10, 10), (1.0, 1.0), (2.0, 2.0)) == (5, 5)


def test_image_and_label_stay_aligned_and_spacing_is_recorded():
    shape = (40, 36, 12)
    block = _block(shape, (8, 10, 3), (24, 30, 9))
    meta = {"spacing": np.array([0.75, 0.75, 2.5])}
    d = {
        "image": MetaTensor(torch.from_numpy(block)[None], affine=torch.eye(4), meta=dict(meta)),
        "label": MetaTensor(
            torch.from_numpy(block.astype(np.uint8))[None], affine=torch.eye(4), meta=dict(meta)
        ),
    }
    out = ResampleToSpacingd(spacing=(1.5, 1.5, 2.5))(d)
    assert tuple(out["image"].shape[1:]) == (20, 18, 12)
    assert out["label"].dtype == torch.uint8
    np.testing.assert_allclose(out["label"].meta["spacing"], [1.5, 1.5, 2.5])
    # the thresholded image equals the label: both sampled at the same centres
    np.testing.assert_array_equal((out["image"][0] >= 0.5).numpy(), out["label"][0].numpy().astype(bool))
    # the field of view is kept: the outer corners of the grids map to the same world points
    old = np.diag([0.75, 0.75, 2.5, 1.0])
    new = scaled_affine(old, shape, (20, 18, 12))
    np.testing.assert_allclose(new @ [-0.5, -0.5, -0.5, 1], old @ [-0.5, -0.5, -0.5, 1])
    np.testing.assert_allclose(new @ [19.5, 17.5, 11.5, 1], old @ [39.5, 35.5, 11.5, 1])


def test_resizing_back_recovers_a_smooth_block():
    block = _block((32, 32, 8), (8, 8, 2), (24, 24, 6))
    down = resize(torch.from_numpy(block)[None], (16, 16, 8), is_label=False)
    up = resize(down, (32, 32, 8), is_label=False)
    assert ((up[0] > 0.5).numpy() == block.astype(bool)).mean() > 0.98
