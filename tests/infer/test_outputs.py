"""What `medseg predict` writes beside a 2D label map: the probabilities laid out as the mask they
belong to (a picture's PNG, a 2D NIfTI or DICOM's label NIfTI), read back with nibabel and numpy."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from medseg.infer.batch import predict_folder
from medseg.infer.outputs import write_probabilities
from medseg.io.raster import read_raster
from medseg.io.readers import NIFTI
from medseg.io.source import NIFTI as NIFTI_KIND
from medseg.io.source import Properties
from medseg.tracking.models import load_bundle

from .conftest import CPU, manifest, untrained_run_dir

TINY_2D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]


def test_picture_probabilities_line_up_with_the_png_mask(synthetic_root, tmp_path):
    """48x64 pictures: probs[r, c, k] as nibabel reads the NIfTI belongs to mask[r, c] of the PNG."""
    settings = ["predict.write_probabilities=true", "infer.largest_component=false", "infer.fill_holes=false"]
    run_dir = untrained_run_dir(
        "demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]", *settings], tmp_path / "run"
    )
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").iterdir())[:2]:
        (inputs / f.name).write_bytes(f.read_bytes())
    summary = predict_folder(load_bundle(str(run_dir)), inputs, tmp_path / "out", CPU, workers=0)
    assert summary["done"] == 2
    for row in manifest(tmp_path / "out"):
        mask = read_raster(tmp_path / "out" / row["mask"])
        probs = nib.load(tmp_path / "out" / row["probabilities"]).get_fdata()
        assert mask.shape == (48, 64) and probs.shape == (48, 64, 2)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
        foreground = probs.argmax(-1) == 1
        assert 0 < foreground.sum() < foreground.size  # an untrained model still draws some of each
        np.testing.assert_array_equal(foreground, mask == 255)


def test_2d_nifti_probabilities_share_the_label_niftis_layout_and_affine(tmp_path):
    """A 2D NIfTI or DICOM input's label NIfTI is stored as (x = column, y = row); the probabilities
    are stored the same way, with the same affine, so probs[x, y, k] belongs to label[x, y]."""
    rows, cols = 5, 7
    rng = np.random.default_rng(0)
    probs = rng.random((3, rows, cols)).astype(np.float32)
    probs /= probs.sum(0)
    label = probs.argmax(0).astype(np.uint8)  # (rows, columns) as predicted
    affine = np.array([[0.0, -0.7, 0, 10], [-0.5, 0, 0, 20], [0, 0, 2.0, 30], [0, 0, 0, 1]])
    props = Properties(NIFTI_KIND, (0.5, 0.7), np.eye(4), (rows, cols), source_affine=affine)
    NIFTI.write_label(tmp_path / "x.nii.gz", label, props, binary=False)
    write_probabilities(tmp_path / "p.nii.gz", {"probabilities": probs}, props, 2)
    stored_label, stored_probs = nib.load(tmp_path / "x.nii.gz"), nib.load(tmp_path / "p.nii.gz")
    assert stored_label.shape == (cols, rows) and stored_probs.shape == (cols, rows, 3)
    np.testing.assert_array_equal(stored_probs.get_fdata().argmax(-1), np.asarray(stored_label.dataobj))
    np.testing.assert_allclose(stored_probs.affine, stored_label.affine)
