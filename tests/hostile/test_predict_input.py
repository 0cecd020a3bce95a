"""`medseg predict` on careless and hostile pictures and DICOM files: every one is either segmented
correctly or recorded in manifest.csv with a reason that says what to do; the batch goes on."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medseg.infer.batch import predict_folder
from medseg.io.raster import read_raster
from medseg.tracking.models import load_bundle

from ..infer.conftest import CPU, manifest, untrained_run_dir
from .pictures import exif_rotated_jpeg, png_bomb

TINY_2D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory):
    run_dir = untrained_run_dir(
        "demo.yaml",
        [*TINY_2D, "transforms.spatial_size=[32, 32]"],
        tmp_path_factory.mktemp("rgb") / "run",
        folds=1,
    )
    return load_bundle(str(run_dir))


def _rows(out):
    return {r["source"] or r["ref"]: r for r in manifest(out)}


def test_pictures_with_other_channels_are_converted_or_refused_and_the_batch_goes_on(rgb_model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8))
    base.convert("RGBA").save(inputs / "rgba.png")
    base.quantize(16).save(inputs / "palette.png")
    base.convert("L").save(inputs / "grey.png")
    base.convert("CMYK").save(inputs / "cmyk.jpg")
    exif_rotated_jpeg(inputs / "turned.jpg", np.asarray(base))
    png_bomb(inputs / "bomb.png")
    summary = predict_folder(rgb_model, inputs, tmp_path / "out", CPU)
    rows = _rows(tmp_path / "out")
    assert (summary["done"], summary["failed"]) == (3, 3)
    for name in ("rgba.png", "palette.png"):
        assert rows[name]["status"] == "done"
        assert read_raster(tmp_path / "out" / rows[name]["mask"]).shape == (40, 48)
    assert read_raster(tmp_path / "out" / rows["turned.jpg"]["mask"]).shape == (48, 40)  # as displayed
    assert "a L picture (1 channel(s)); the model takes 3 (RGB)" in rows["grey.png"]["reason"]
    assert "a CMYK picture (4 channel(s)); the model takes 3 (RGB)" in rows["cmyk.jpg"]["reason"]
    assert "20000x20000 pixels is over the limit" in rows["bomb.png"]["reason"]
    assert "--set data.max_image_pixels=N" in rows["bomb.png"]["reason"]


def _dicom_image(path, sop_class: str = CTImageStorage) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class or CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "CT", "X", "X"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "1", "1"
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.PatientBirthDate, ds.PatientSex, ds.Manufacturer = "", "O", "medseg"
    ds.Rows, ds.Columns, ds.PixelSpacing = 32, 32, [0.7, 0.7]
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.SliceThickness, ds.FrameOfReferenceUID = 1.0, generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.random.default_rng(1).integers(0, 2000, (32, 32), np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_a_dicom_image_without_a_sop_class_keeps_its_mask_and_skips_the_seg_with_a_reason(tmp_path):
    run_dir = untrained_run_dir(
        "demo.yaml",
        [*TINY_2D, "transforms.spatial_size=[32, 32]", "data.in_channels=1", "transforms.preprocess=[]"],
        tmp_path / "run",
        folds=1,
    )
    inputs = tmp_path / "in"
    inputs.mkdir()
    _dicom_image(inputs / "good.dcm")
    _dicom_image(inputs / "no_class.dcm", sop_class="")
    assert pydicom.dcmread(inputs / "no_class.dcm").SOPClassUID == ""
    summary = predict_folder(load_bundle(str(run_dir)), inputs, tmp_path / "out", CPU)
    assert (summary["done"], summary["failed"]) == (2, 0)
    rows = sorted(manifest(tmp_path / "out"), key=lambda r: r["seg"])
    no_seg, with_seg = rows
    assert no_seg["seg"] == "" and "no DICOM SEG: the source has no SOPClassUID" in no_seg["reason"]
    assert (tmp_path / "out" / no_seg["mask"]).is_file()
    assert with_seg["seg"] and (tmp_path / "out" / with_seg["seg"]).is_file()
