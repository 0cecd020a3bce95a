"""The fingerprint of hand-made data: shapes, spacings, foreground intensities and classes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.io.nifti import write_nifti
from medseg.plan.fingerprint import fingerprint

from ..conftest import make_dataset


def _volume(root, name, fg_values, classes, spacing=(1.0, 1.0, 3.0)):
    image = np.zeros((8, 8, 4), np.int16)
    label = np.zeros((8, 8, 4), np.uint8)
    image[2:4, 2:4, 1] = np.asarray(fg_values, np.int16).reshape(2, 2)
    label[2:4, 2:4, 1] = classes
    affine = np.diag([*spacing, 1.0])
    write_nifti(root / f"{name}_img.nii.gz", image, affine)
    write_nifti(root / f"{name}_seg.nii.gz", label, affine)
    return f"{name},{name}_img.nii.gz,{name}_seg.nii.gz\n"


def test_intensities_classes_and_geometry_of_a_table(tmp_path):
    rows = _volume(tmp_path, "a", [10, 20, 30, 40], 1)
    rows += _volume(tmp_path, "b", [50, 60, 70, 80], [[1, 1], [2, 2]], spacing=(1.0, 1.0, 5.0))
    rows += _volume(tmp_path, "c", [0, 0, 0, 0], 0)
    (tmp_path / "cases.csv").write_text("id,image,label\n" + rows)
    fp = fingerprint(tmp_path, "table")
    assert fp["spatial_dims"] == 3 and fp["n_cases"] == 3 and fp["bad_cases"] == []
    a = next(c for c in fp["cases"] if c["id"] == "a")
    assert a["shape"] == [8, 8, 4] and a["spacing"] == [1.0, 1.0, 3.0] and a["orientation"] == "RAS"
    assert fp["median_spacing"] == [1.0, 1.0, 3.0]  # median of 3, 5 and 3
    # foreground of a and b: 10..80; mean 45, std sqrt((35^2+25^2+15^2+5^2) x 2 / 8) = 22.913;
    # 0.5th percentile 10 + 0.035 x 10 = 10.35 and 99.5th 80 - 0.35 = 79.65
    s = fp["intensity"][0]
    assert s["mean"] == pytest.approx(45.0) and s["std"] == pytest.approx(22.9129, abs=1e-4)
    assert s["median"] == pytest.approx(45.0)
    assert s["percentile_00_5"] == pytest.approx(10.35) and s["percentile_99_5"] == pytest.approx(79.65)
    assert fp["classes"]["1"] == {"voxels": 6, "cases_with": 2, "share_of_cases": 0.6667}
    assert fp["classes"]["2"] == {"voxels": 2, "cases_with": 1, "share_of_cases": 0.3333}  # in few cases
    json.dumps({k: v for k, v in fp.items() if k != "usable"})  # JSON-ready


def test_pictures_and_bad_cases_reported_first(tmp_path):
    root = make_dataset(tmp_path / "d", n_cases=6, height=32, width=40)
    (root / "ISIC2018_Task1_Training_GroundTruth" / "SYN0003_segmentation.png").unlink()
    fp = fingerprint(root, "isic")
    assert fp["spatial_dims"] == 2 and fp["channels"] == 3 and fp["modality"] == "RGB"
    assert fp["median_shape"] == [32.0, 40.0] and fp["n_cases"] == 5
    assert [b["id"] for b in fp["bad_cases"]] == ["SYN0003"] and "no mask" in fp["bad_cases"][0]["reason"]
    assert len(fp["intensity"]) == 3 and 0 <= fp["intensity"][0]["median"] <= 1
