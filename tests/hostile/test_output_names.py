"""Hostile input, output names: a crafted UID or file name never writes outside ``--output``, and
pictures keep their own names so ``medseg evaluate`` pairs predictions with references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from medseg.errors import DataError
from medseg.evaluate.folders import evaluate_folders
from medseg.infer.batch import predict_folder
from medseg.io.names import inside, safe_name
from medseg.io.raster import read_raster, write_png
from medseg.tracking.models import load_bundle

from ..infer.conftest import CPU, manifest, untrained_run_dir
from ..infer.test_predict_2d import TINY_2D

CRAFTED = ["../../escaped", "/tmp/medseg-absolute-escape", "..", "a/../../b", "x" * 300]


def mammogram(path: Path, sop_uid: str, series_uid: str) -> Path:
    """A small grey digital mammogram whose UIDs are whatever the caller says."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3.4", series_uid, "MG"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 96, 64, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.1, 0.1]
    pixels = np.zeros((96, 64), np.uint16)
    pixels[20:70, :40] = 3000
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("text", CRAFTED)
def test_safe_names_stay_in_their_folder(text, tmp_path):
    name = safe_name(text)
    assert "/" not in name and not name.startswith(".") and 0 < len(name) <= 120
    assert inside(tmp_path, name).parent == tmp_path


def test_inside_refuses_a_name_that_leaves_the_folder(tmp_path):
    for name in ("../x", "a/b", "/etc/passwd", ".."):
        with pytest.raises(DataError, match="would leave the output folder"):
            inside(tmp_path, name)


def test_crafted_sop_uids_write_only_inside_the_output_folder(tmp_path):
    run_dir = untrained_run_dir(
        "mammo.yaml",
        [*TINY_2D, "transforms.spatial_size=[64, 48]", "transforms.preprocess=[]", "predict.write_seg=false"],
        tmp_path / "run",
        folds=1,
    )
    inputs, out = tmp_path / "deep" / "in", tmp_path / "deep" / "out"
    for i, uid in enumerate(CRAFTED):
        mammogram(inputs / f"{i}.dcm", uid, "1.2.3.4.5")
    before = {p for p in tmp_path.rglob("*") if "out" not in p.parts}
    summary = predict_folder(load_bundle(str(run_dir)), inputs, out, CPU)
    assert summary["done"] == len(CRAFTED) and summary["failed"] == 0
    after = {p for p in tmp_path.rglob("*") if "out" not in p.parts}
    assert after == before  # nothing written beside the output folder
    assert not Path("/tmp/medseg-absolute-escape.nii.gz").exists()
    rows = manifest(out)
    assert len({r["mask"] for r in rows}) == len(CRAFTED)  # ".." and "a/../../b" do not collide
    for row in rows:
        assert (out / row["mask"]).resolve().parent == out.resolve() and (out / row["overlay"]).is_file()
        assert row["key"] == safe_name(row["sop_uid"]) or row["key"].startswith(safe_name(row["sop_uid"]))


def test_pictures_keep_their_names_and_pair_with_references(synthetic_root, tmp_path):
    """``sub dir/ISIC_x.jpg`` -> ``sub_dir__ISIC_x.png``; top-level pictures keep their stem, so
    ``medseg evaluate --ref-suffix _segmentation`` pairs the outputs with the reference masks."""
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp_path / "run")
    images = sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").iterdir())[:3]
    masks = synthetic_root / "ISIC2018_Task1_Training_GroundTruth"
    inputs, refs = tmp_path / "in", tmp_path / "refs"
    inputs.mkdir()
    refs.mkdir()
    for f in images[:2]:
        (inputs / f.name).write_bytes(f.read_bytes())
        ref = next(masks.glob(f"{f.stem}_segmentation.*"))
        write_png(refs / f"{f.stem}_segmentation.png", read_raster(ref))
    (inputs / "sub dir").mkdir()
    (inputs / "sub dir" / images[2].name).write_bytes(images[2].read_bytes())
    out = tmp_path / "out"
    summary = predict_folder(load_bundle(str(run_dir)), inputs, out, CPU)
    assert summary["done"] == 3
    names = {r["source"]: r["mask"] for r in manifest(out)}
    assert names[images[0].name] == f"{images[0].stem}.png"
    assert names[f"sub dir/{images[2].name}"] == f"sub_dir__{images[2].stem}.png"
    (out / names[f"sub dir/{images[2].name}"]).unlink()  # no reference for it
    for extra in out.glob("*_overlay.png"):
        extra.unlink()
    result = evaluate_folders(out, refs, tmp_path / "eval", ref_suffix="_segmentation")
    assert result["n_cases"] == 2, result
