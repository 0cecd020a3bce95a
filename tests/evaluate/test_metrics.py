"""Metrics against hand-computed values and an independent scipy implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medseg.evaluate.metrics import case_metrics, summarize


def square(shape=(32, 32), top=8, left=8, size=12) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[top : top + size, left : left + size] = 1
    return m


def reference_hd95(a: np.ndarray, b: np.ndarray, spacing=(1.0, 1.0)) -> float:
    """Independent HD95: inner-boundary pixels (erosion with the face-connected cross),
    Euclidean distance transforms, max of the two directed 95th percentiles."""

    def edges(m: np.ndarray) -> np.ndarray:
        m = m.astype(bool)
        return m & ~ndimage.binary_erosion(m)

    ea, eb = edges(a), edges(b)
    da = ndimage.distance_transform_edt(~eb, sampling=spacing)[ea]
    db = ndimage.distance_transform_edt(~ea, sampling=spacing)[eb]
    return float(max(np.percentile(da, 95), np.percentile(db, 95)))


def test_known_dice_iou_of_hand_made_masks() -> None:
    ref = np.zeros((8, 8), int)
    ref[2:6, 2:6] = 1  # 16 pixels
    pred = np.zeros((8, 8), int)
    pred[2:6, 2:4] = 1  # 8 pixels, all inside
    m = case_metrics(pred, ref)
    assert m["dice"] == pytest.approx(2 * 8 / 24)
    assert m["iou"] == pytest.approx(0.5)
    assert m["jaccard_thresholded"] == 0.0  # below 0.65
    pred[2:6, 2:5] = 1  # 12 pixels: IoU 0.75 passes the threshold
    m = case_metrics(pred, ref)
    assert m["iou"] == pytest.approx(0.75) and m["jaccard_thresholded"] == pytest.approx(0.75)


PERFECT = {
    "dice": 1.0,
    "iou": 1.0,
    "jaccard_thresholded": 1.0,
    "hd95": 0.0,
    "hd": 0.0,
    "assd": 0.0,
    "nsd": 1.0,
}


def test_identical_masks_are_perfect() -> None:
    m = case_metrics(square(), square())
    assert m == {
        **PERFECT,
        "diagonal": pytest.approx(np.hypot(32, 32)),
        "ref_voxels": 144,
        "pred_voxels": 144,
    }


def test_shift_gives_known_distances_and_nsd() -> None:
    ref, pred = square(), square(left=11)  # shifted 3 pixels right
    m = case_metrics(pred, ref, nsd_tolerance=3.5)
    assert m["hd95"] == pytest.approx(3.0) and m["hd"] == pytest.approx(3.0)
    # edge pixels of the two squares: the vertical sides sit 3 apart, the horizontal ones overlap
    assert 0 < m["assd"] < 3.0
    assert m["nsd"] == pytest.approx(1.0)
    assert case_metrics(pred, ref, nsd_tolerance=1.0)["nsd"] < 0.8
    assert m["dice"] == pytest.approx(2 * 12 * 9 / (2 * 144))


@pytest.mark.parametrize("seed", range(4))
def test_hd95_agrees_with_independent_implementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((64, 64)), 4) > 0.5)
    pred = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((64, 64)), 4) > 0.5) | ref
    pred[5:9, 50:55] = True  # a false-positive blob
    if not ref.any():
        ref[30:34, 30:34] = True
    m = case_metrics(pred.astype(int), ref.astype(int))
    # MONAI returns float32: agreement to float32 precision
    assert m["hd95"] == pytest.approx(reference_hd95(pred, ref), rel=1e-6)


def test_empty_mask_conventions() -> None:
    empty = np.zeros((16, 16), int)
    both = case_metrics(empty, empty, spacing=[0.5, 2.0])
    assert both == {**PERFECT, "diagonal": pytest.approx(np.hypot(8, 32)), "ref_voxels": 0, "pred_voxels": 0}
    one = case_metrics(empty, square((16, 16), 4, 4, 4))
    assert one["dice"] == 0.0 and one["iou"] == 0.0 and one["nsd"] == 0.0
    assert all(math.isinf(one[m]) for m in ("hd95", "hd", "assd"))
    other = case_metrics(square((16, 16), 4, 4, 4), empty)
    assert other["dice"] == 0.0 and math.isinf(other["hd95"])


def test_ignore_value_is_masked_out_of_metrics() -> None:
    ref = square()
    pred = square()
    ref[0:4, :] = 255  # ignored band
    pred[0:4, :] = 1  # prediction there must not count
    assert case_metrics(pred, ref, ignore_value=255)["dice"] == 1.0
    assert case_metrics(pred, ref)["dice"] < 1.0


def test_summary_counts_infinite_values_and_excludes_them_from_means() -> None:
    s = summarize([1.0, 3.0, math.inf])
    assert s["n"] == 3 and s["n_infinite"] == 1
    assert s["mean"] == pytest.approx(2.0) and s["median"] == pytest.approx(2.0)


def test_capped_mean_counts_infinite_distances_as_the_diagonal() -> None:
    s = summarize([1.0, 3.0, math.inf], caps=[100.0, 100.0, 50.0])
    assert s["mean"] == pytest.approx(2.0) and s["n_infinite"] == 1
    assert s["capped_mean"] == pytest.approx((1 + 3 + 50) / 3)
