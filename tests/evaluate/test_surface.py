"""medseg's surface metrics equal MONAI's (2D, anisotropic 3D, blobs, masks touching the border),
and cropping to the union changes no value."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from medseg.evaluate.surface import crop_union, hausdorff, surface_dice, surface_metrics


def _onehot(m: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(m)
    return torch.stack([~t, t])[None].float()


def _monai(pred: np.ndarray, ref: np.ndarray, spacing: list[float], tol: float) -> dict[str, float]:
    from monai.metrics import (
        compute_average_surface_distance,
        compute_hausdorff_distance,
        compute_surface_dice,
    )

    p, r = _onehot(pred), _onehot(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return {
            "hd95": float(compute_hausdorff_distance(p, r, percentile=95, spacing=spacing).item()),
            "hd": float(compute_hausdorff_distance(p, r, spacing=spacing).item()),
            "assd": float(compute_average_surface_distance(p, r, symmetric=True, spacing=spacing).item()),
            "nsd": float(compute_surface_dice(p, r, [tol], spacing=spacing, use_subvoxels=True).item()),
        }


def _blob(shape: tuple[int, ...], rng: np.random.Generator, n: int = 3) -> np.ndarray:
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=[s / 8 for s in shape])
    mask = noise > np.quantile(noise, 0.8)
    for _ in range(n):  # small false-positive islands far away
        centre = [int(rng.integers(0, s)) for s in shape]
        mask[tuple(slice(max(0, c - 1), c + 2) for c in centre)] = True
    return mask


@pytest.mark.parametrize(
    ("shape", "spacing", "tol"),
    [((64, 80), [1.0, 1.0], 2.0), ((48, 40), [0.7, 1.3], 1.5), ((40, 36, 12), [0.8, 0.8, 2.0], 2.0)],
)
@pytest.mark.parametrize("path", ["kdtree", "distance_transform"])
def test_equal_to_monai(shape, spacing, tol, path, monkeypatch):
    import medseg.evaluate.surface as surface

    monkeypatch.setattr(surface, "EDT_COST_RATIO", 0 if path == "kdtree" else 10**9)
    rng = np.random.default_rng(len(shape) * 10 + int(spacing[0] * 10))
    for _ in range(3):
        ref, pred = _blob(shape, rng, 0), _blob(shape, rng, 3)
        ours, theirs = surface_metrics(pred, ref, spacing, tol), _monai(pred, ref, spacing, tol)
        for key in theirs:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-6), key


def test_masks_touching_the_border_equal_monai():
    ref = np.zeros((20, 24, 6), bool)
    ref[:10, 5:24, :] = True  # touches three faces of the volume
    pred = np.zeros_like(ref)
    pred[2:12, 0:20, 1:6] = True
    ours, theirs = surface_metrics(pred, ref, [0.8, 0.8, 2.0], 1.0), _monai(pred, ref, [0.8, 0.8, 2.0], 1.0)
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-6), key


def test_cropping_changes_no_value():
    rng = np.random.default_rng(5)
    ref, pred = np.zeros((60, 60, 20), bool), np.zeros((60, 60, 20), bool)
    ref[20:35, 22:40, 5:12] = _blob((15, 18, 7), rng, 0)
    pred[21:37, 20:38, 6:13] = _blob((16, 18, 7), rng, 1)
    cp, cr = crop_union(pred, ref)
    assert cp.size < pred.size / 10
    for spacing in ([1.0, 1.0, 1.0], [0.8, 0.8, 2.0]):
        assert surface_metrics(cp, cr, spacing, 2.0) == surface_metrics(pred, ref, spacing, 2.0)


def test_known_values_of_shifted_squares():
    ref = np.zeros((30, 30), bool)
    ref[10:20, 10:20] = True
    pred = np.roll(ref, 3, axis=1)
    # every edge pixel of one square lies at most 3 pixels from the other's edge
    assert hausdorff(pred, ref, [1.0, 1.0]) == pytest.approx(3.0)
    assert hausdorff(pred, ref, [1.0, 0.5]) == pytest.approx(1.5)
    assert surface_dice(ref, ref, [1.0, 1.0], 0.5) == pytest.approx(1.0)


def test_hd95_differs_from_a_pooled_percentile_when_a_blob_is_present():
    """The definition matters: MedPy's pooled percentile reads much lower than the directed maximum."""
    from medseg.evaluate.surface import distances

    ref = np.zeros((100, 100), bool)
    ref[20:60, 20:60] = True
    pred = ref.copy()
    pred[88:92, 88:92] = True  # a small false-positive blob far away
    d_pr, d_rp = distances(pred, ref, [1.0, 1.0])
    pooled = float(np.percentile(np.concatenate([d_pr, d_rp]), 95))
    directed_max = hausdorff(pred, ref, [1.0, 1.0])
    assert directed_max > 3 * pooled and directed_max > 35


@pytest.mark.parametrize(
    "shape, spacing",
    [((60, 50, 12), (0.977, 0.977, 2.0)), ((80, 70), (0.3, 0.7)), ((40, 41, 7), (0.8125, 0.8125, 2.5))],
)
def test_distances_at_the_edge_voxels_equal_scipys_whole_transform_bit_for_bit(shape, spacing):
    """Only the distances asked about are computed, by scipy's own arithmetic: the same float32
    values as indexing scipy's distance transform of the whole box, noise and sparse surfaces alike."""
    from scipy.ndimage import distance_transform_edt

    from medseg.evaluate.surface import _edt_at

    rng = np.random.default_rng(0)
    for density in (0.001, 0.05, 0.5):
        to, start = rng.random(shape) < density, rng.random(shape) < 0.3
        whole = np.asarray(distance_transform_edt(~to, sampling=list(spacing))[start], dtype=np.float32)
        np.testing.assert_array_equal(_edt_at(start, to, spacing), whole)
