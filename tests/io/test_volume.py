"""NIfTI: canonical orientation, spacing from the header, label grid checks, 2D order."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.errors import DataError
from medseg.io.geometry import same_grid
from medseg.io.nifti import write_nifti
from medseg.io.readers import read_image2d, read_volume, volume_geometry

from ..conftest import SHARED_DATA


def _world(affine: np.ndarray, ijk: tuple[int, int, int]) -> np.ndarray:
    return (affine @ np.array([*ijk, 1.0]))[:3]


def test_lps_volume_is_reoriented_to_ras_keeping_every_voxel_in_place(tmp_path):
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)
    affine = np.array([[-0.8, 0, 0, 10], [0, -0.8, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1]])
    write_nifti(tmp_path / "lps.nii.gz", data, affine)
    out, out_affine, tags = read_volume(tmp_path / "lps.nii.gz")
    assert nib.aff2axcodes(out_affine) == ("R", "A", "S")
    assert tags["spacing"] == pytest.approx((0.8, 0.8, 2.5))
    # the voxel value at a world position is unchanged
    for ijk in [(0, 0, 0), (3, 1, 2), (1, 4, 1)]:
        world = _world(affine, ijk)
        new_ijk = np.round(np.linalg.solve(out_affine, [*world, 1.0])[:3]).astype(int)
        assert out[tuple(new_ijk)] == data[ijk]
    shape, geom_affine = volume_geometry(tmp_path / "lps.nii.gz")
    assert shape == out.shape
    np.testing.assert_allclose(geom_affine, out_affine)


def test_label_on_another_grid_is_reported(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    write_nifti(tmp_path / "img.nii.gz", np.zeros((6, 6, 4), np.int16), affine)
    write_nifti(tmp_path / "small.nii.gz", np.zeros((6, 6, 3), np.uint8), affine)
    shifted = affine.copy()
    shifted[0, 3] = 0.5
    write_nifti(tmp_path / "shifted.nii.gz", np.zeros((6, 6, 4), np.uint8), shifted)
    image = volume_geometry(tmp_path / "img.nii.gz")
    assert "grid" in (same_grid(image, volume_geometry(tmp_path / "small.nii.gz")) or "")
    assert "affines differ" in (same_grid(image, volume_geometry(tmp_path / "shifted.nii.gz")) or "")
    assert same_grid(image, volume_geometry(tmp_path / "img.nii.gz")) is None


def test_unreadable_nifti_names_the_file(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="bad.nii.gz"):
        read_volume(bad)


def test_2d_nifti_is_read_in_row_column_order(tmp_path):
    rows_cols = np.arange(12, dtype=np.uint8).reshape(3, 4)  # (rows, columns)
    write_nifti(tmp_path / "m.nii.gz", rows_cols.T[..., None], np.diag([0.1, 0.2, 1.0, 1.0]))
    array, tags = read_image2d(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(array, rows_cols)
    assert tags["spacing"] == pytest.approx((0.2, 0.1))


def test_real_lps_chest_ct_and_label_share_the_canonical_grid():
    root = SHARED_DATA / "ct" / "pyradiomics-lung1"
    if not root.is_dir():
        pytest.skip(f"real CT data not present at {root}")
    image, affine, tags = read_volume(root / "image.nii.gz")
    label, label_affine, _ = read_volume(root / "label.nii.gz")
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    assert image.shape == label.shape == (512, 512, 48)
    np.testing.assert_allclose(affine, label_affine, atol=1e-3)
    assert tags["spacing"] == pytest.approx((0.57, 0.57, 5.0), abs=1e-3)
    assert int((label > 0).sum()) == 837
    assert -200 < float(image[label > 0].mean()) < 200  # a soft-tissue tumour in HU
