"""medseg's distance-transform surface metrics equal MONAI's KD-tree ones (2D, anisotropic 3D, blobs)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from medseg.evaluate.surface import hausdorff_percentile, surface_dice


def _monai(pred: np.ndarray, ref: np.ndarray, spacing: list[float], tol: float) -> tuple[float, float]:
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    def onehot(m: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(m)
        return torch.stack([~t, t])[None].float()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(onehot(pred), onehot(ref), percentile=95, spacing=spacing)
        nsd = compute_surface_dice(onehot(pred), onehot(ref), [tol], spacing=spacing, use_subvoxels=True)
    return float(hd.item()), float(nsd.item())


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
def test_equal_to_monai(shape, spacing, tol):
    rng = np.random.default_rng(len(shape) * 10 + int(spacing[0] * 10))
    for _ in range(3):
        ref, pred = _blob(shape, rng, 0), _blob(shape, rng, 3)
        hd, nsd = _monai(pred, ref, spacing, tol)
        assert hausdorff_percentile(pred, ref, spacing) == pytest.approx(hd, rel=1e-6, abs=1e-6)
        assert surface_dice(pred, ref, spacing, tol) == pytest.approx(nsd, rel=1e-6, abs=1e-6)


def test_known_values_of_shifted_squares():
    ref = np.zeros((30, 30), bool)
    ref[10:20, 10:20] = True
    pred = np.roll(ref, 3, axis=1)
    # every edge pixel of one square lies at most 3 pixels from the other's edge
    assert hausdorff_percentile(pred, ref, [1.0, 1.0]) == pytest.approx(3.0)
    assert hausdorff_percentile(pred, ref, [1.0, 0.5]) == pytest.approx(1.5)
    assert surface_dice(ref, ref, [1.0, 1.0], 0.5) == pytest.approx(1.0)
