"""The reader registry: one suffix table for ingest, evaluate and predict; a format is one class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.errors import DataError
from medseg.evaluate.folders import case_id
from medseg.io import readers
from medseg.io.nifti import write_nifti
from medseg.io.readers import NIFTI, RASTER, Reader, case_stem, read_image2d, read_mask, reader_for


@pytest.mark.parametrize("name", ["a.png", "a.JPG", "a.jpeg", "a.bmp", "a.tif", "a.TIFF"])
def test_every_picture_suffix_is_a_picture_everywhere(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    assert reader_for(path) is RASTER and readers.reader_by_name(path) is RASTER
    assert case_stem(name) == "a"
    path.write_bytes(b"")
    assert case_id(path, "") == "a"  # evaluate pairs it like any other picture


def test_bmp_masks_pair_with_png_predictions(tmp_path: Path) -> None:
    from medseg.evaluate.folders import evaluate_folders

    mask = np.zeros((20, 30), np.uint8)
    mask[5:15, 10:20] = 255
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    Image.fromarray(mask).save(tmp_path / "ref" / "case1.bmp")
    Image.fromarray(mask // 255).save(tmp_path / "pred" / "case1.png")
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "out")
    assert summary["n_cases"] == 1 and summary["labels"]["label_1"]["dice"]["mean"] == 1.0


def test_nifti_suffixes_strip_whole(tmp_path: Path) -> None:
    assert case_stem("liver_01.nii.gz") == "liver_01" and case_stem("x.nii") == "x"
    assert reader_for(tmp_path / "v.nii.gz") is NIFTI


def test_2d_and_3d_nifti_masks_are_read_by_their_shape(tmp_path: Path) -> None:
    vol = np.zeros((6, 5, 4), np.uint8)
    vol[1:3, 1:4, 2] = 1
    write_nifti(tmp_path / "v.nii.gz", vol, np.diag([2.0, 2.0, 3.0, 1.0]))
    mask = read_mask(tmp_path / "v.nii.gz")
    assert mask.array.shape == (6, 5, 4) and mask.spacing == (2.0, 2.0, 3.0) and not mask.partial
    flat = np.zeros((6, 5), np.uint8)
    flat[0, 4] = 1  # x = 0, y = 4: row 4, column 0
    write_nifti(tmp_path / "f.nii.gz", flat, np.diag([0.5, 0.7, 1.0, 1.0]))
    mask2d = read_mask(tmp_path / "f.nii.gz")
    assert mask2d.array.shape == (5, 6) and mask2d.array[4, 0] == 1
    assert mask2d.spacing == pytest.approx((0.7, 0.5))


def test_missing_file_without_a_suffix_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing.*file not found"):
        read_image2d(tmp_path / "nothing")


def test_a_new_format_is_one_class(tmp_path: Path, monkeypatch) -> None:
    class NumpyReader(Reader):
        kind = "numpy"
        suffixes = (".npy",)
        by_suffix = True
        pictures = True

        def read_2d(self, path: Path, voi_lut: bool = False, channels: int | None = None) -> readers.Image2D:
            return np.load(path), {"spacing": (1.0, 1.0), "spacing_source": "pixel"}

    monkeypatch.setattr(readers, "READERS", [NumpyReader(), *readers.READERS])
    array = np.arange(12, dtype=np.uint8).reshape(3, 4) % 2
    np.save(tmp_path / "m.npy", array)
    assert case_stem("m.npy") == "m"
    np.testing.assert_array_equal(read_image2d(tmp_path / "m.npy")[0], array)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.npy").array, array)
