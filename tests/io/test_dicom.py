"""DICOM series: grouping, skipping, sorting by position, geometry checks, HU, compressed data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.data.synthetic_ct import affine_for, make_case, write_ct_series
from medseg.errors import DataError
from medseg.io.dicom import read_series_folder, scan_tree
from medseg.io.geometry import same_grid
from medseg.io.readers import read_volume, volume_geometry

from ..conftest import SHARED_DATA

SHAPE = (24, 20, 8)


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    hu, _ = make_case(SHAPE, np.random.default_rng(0))
    hu = np.maximum(np.round(hu), -1024)  # stored as unsigned with intercept -1024
    affine = affine_for(SHAPE, lps=False)
    folder = tmp_path / "series"
    write_ct_series(hu, affine, folder, "1.2.826.0.1.3680043.8.498.1", seed=3)
    return folder, hu, affine


def _edit(folder: Path, index: int, **tags: object) -> None:
    path = sorted(folder.glob("*.dcm"))[index]
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path)


def _position(folder: Path, index: int) -> list[float]:
    return list(pydicom.dcmread(sorted(folder.glob("*.dcm"))[index]).ImagePositionPatient)


def test_series_reads_back_in_hu_with_its_affine(series):
    folder, hu, affine = series
    numbers = [int(pydicom.dcmread(p).InstanceNumber) for p in sorted(folder.glob("*.dcm"))]
    assert numbers != sorted(numbers)  # InstanceNumber does not follow position: sorting must not use it
    volume, got_affine, tags = read_series_folder(folder)
    assert volume.shape == SHAPE
    np.testing.assert_allclose(got_affine, affine, atol=1e-6)
    np.testing.assert_array_equal(volume, hu)
    assert tags["modality"] == "CT"


def test_slices_are_sorted_by_position_not_file_order(series, tmp_path):
    folder, hu, _ = series
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for i, p in enumerate(sorted(folder.glob("*.dcm"))[::-1]):  # names now run against position
        shutil.copy(p, shuffled / f"{i:02d}.dcm")
    volume, _, _ = read_series_folder(shuffled)
    np.testing.assert_array_equal(volume, hu)


def test_scan_groups_series_and_skips_non_images(series, tmp_path):
    folder, _, _ = series
    tree = tmp_path / "tree"
    shutil.copytree(folder, tree / "a")
    write_ct_series(
        np.zeros((8, 8, 3)), affine_for((8, 8, 3), False), tree / "b", "1.2.826.0.1.3680043.8.498.2"
    )
    sr = pydicom.dcmread(sorted(folder.glob("*.dcm"))[0])
    sr.Modality = "SR"
    sr.save_as(tree / "report.dcm")
    (tree / "notes.txt").write_text("not DICOM")
    (tree / "truncated.dcm").write_bytes(sorted(folder.glob("*.dcm"))[0].read_bytes()[:300])
    scan = scan_tree(tree)
    assert sorted(len(s.files) for s in scan.series.values()) == [3, SHAPE[2]]
    reasons = {Path(p).name: r for p, r in scan.skipped}
    assert "non-image" in reasons["report.dcm"]
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "truncated.dcm" in reasons
    with pytest.raises(DataError, match="2 series found"):
        read_series_folder(tree)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: (f / "slice_0003.dcm").unlink(), "missing slice"),
        (lambda f: _edit(f, 2, ImagePositionPatient=_position(f, 1)), "duplicate slice position"),
        (lambda f: _edit(f, 4, ImageOrientationPatient=[1, 0, 0, 0, 0.8, 0.6]), "different orientations"),
        (lambda f: _edit(f, 4, Rows=10, PixelData=np.zeros((10, 24), np.uint16).tobytes()),
         "different sizes"),
    ],
)  # fmt: skip
def test_broken_series_give_clear_errors(series, edit, message):
    folder, _, _ = series
    edit(folder)
    with pytest.raises(DataError, match=message) as err:
        read_series_folder(folder)
    assert str(folder) in str(err.value)


def test_gantry_tilt_is_refused(series):
    folder, _, _ = series
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * (z + 100), z]  # shifts along y as z grows: tilted stack
        ds.save_as(path)
    with pytest.raises(DataError, match="gantry tilt"):
        read_series_folder(folder)


def test_truncated_pixel_data_names_the_file(series):
    folder, _, _ = series
    path = sorted(folder.glob("*.dcm"))[1]
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=path.name):
        read_series_folder(folder)


def test_rle_compressed_series_decodes_to_the_same_values(series):
    from pydicom.uid import RLELossless

    folder, hu, _ = series
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    assert pydicom.dcmread(next(folder.glob("*.dcm"))).file_meta.TransferSyntaxUID == RLELossless
    volume, _, _ = read_series_folder(folder)
    np.testing.assert_array_equal(volume, hu)


def test_real_series_matches_its_label_grid_and_liver_hu():
    root = SHARED_DATA / "ct" / "totalsegmentator-example"
    if not root.is_dir():
        pytest.skip(f"real CT data not present at {root}")
    first = pydicom.dcmread(next((root / "dicom").iterdir()))
    assert first.file_meta.TransferSyntaxUID.name.startswith("JPEG 2000")  # decoded through pylibjpeg
    volume, affine, tags = read_volume(root / "dicom")
    label, label_affine, _ = read_volume(root / "seg_for_dicom.nii.gz")
    assert volume.shape == label.shape == (512, 512, 20)
    np.testing.assert_allclose(affine, label_affine, atol=1e-3)
    assert same_grid(volume_geometry(root / "dicom"), volume_geometry(root / "seg_for_dicom.nii.gz")) is None
    assert tags["spacing"] == pytest.approx((0.9765625, 0.9765625, 2.0))
    liver_hu = float(volume[label == 5].mean())
    assert 0 < liver_hu < 100
    assert float(volume[0, 0, 0]) < -900  # air outside the body: the intercept was applied


@pytest.mark.parametrize(
    ("compressed", "reference"),
    [
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),  # JPEG 2000 lossless (pylibjpeg-openjpeg)
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless (pyjpegls)
        ("MR_small_RLE.dcm", "MR_small.dcm"),  # RLE lossless (pydicom)
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),  # JPEG lossless process 14 (pylibjpeg-libjpeg)
    ],
)
def test_compressed_transfer_syntaxes_decode_losslessly(compressed, reference):
    from pydicom.data import get_testdata_file

    from medseg.io.dicom import decode

    paths = [get_testdata_file(name) for name in (compressed, reference)]
    if None in paths:
        pytest.skip("pydicom test file missing")
    a, b = (decode(pydicom.dcmread(p), p) for p in paths)
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)
