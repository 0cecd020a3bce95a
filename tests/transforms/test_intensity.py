"""CT windows, clip-and-z-score, and the foreground statistics gathered at ingest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medseg.io.case import Case
from medseg.io.source import Source
from medseg.transforms.intensity import WINDOWS, ClipZScore, ClipZScored, CTWindowd, parse_window


def test_named_windows_match_their_width_and_level():
    assert WINDOWS == {
        "soft_tissue": (400, 40),
        "lung": (1500, -600),
        "bone": (1800, 400),
        "brain": (80, 40),
    }
    hu = torch.tensor([[[-1000.0, -160.0, 40.0, 240.0, 1300.0]]])
    out = CTWindowd("image", windows=["soft_tissue", "lung", [80, 40]])({"image": hu})["image"]
    assert out.shape == (3, 1, 5)
    np.testing.assert_allclose(out[0, 0], [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(
        out[1, 0], np.clip((np.array([-1000, -160, 40, 240, 1300]) + 1350) / 1500, 0, 1)
    )
    np.testing.assert_allclose(out[2, 0], [0, 0, 0.5, 1, 1])


def test_bad_windows_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="presets: soft_tissue"):
        parse_window("liver")
    with pytest.raises(ValueError, match="width, level"):
        parse_window([0, 40])


def test_clip_zscore_follows_nnunet():
    x = torch.tensor([-1000.0, 0.0, 50.0, 100.0, 3000.0])
    out = ClipZScore(lower=-10, upper=200, mean=50, std=25)(x)
    np.testing.assert_allclose(out, [(-10 - 50) / 25, -2, 0, 2, (200 - 50) / 25])
    with pytest.raises(RuntimeError, match="statistics not set"):
        ClipZScored("image")({"image": x})


def test_gathered_statistics_equal_numpy_on_the_foreground(tmp_path):
    from medseg.io.nifti import write_nifti
    from medseg.pipeline.stages import resolve_statistics
    from medseg.run_dir import RunDir

    from ..conftest import tiny_config

    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    cases, fg_values = [], []
    for i in range(3):
        image = rng.normal(0, 300, (10, 10, 6)).round().astype(np.int16)
        label = np.zeros((10, 10, 6), np.uint8)
        label[2:6, 3:8, 1:4] = 5
        label[7, 7, 5] = 9  # not picked by data.labels: background
        write_nifti(tmp_path / f"i{i}.nii.gz", image, affine)
        write_nifti(tmp_path / f"l{i}.nii.gz", label, affine)
        image_file = Source.one(tmp_path / f"i{i}.nii.gz", "nifti")
        cases.append(Case(f"c{i}", (image_file,), Source.one(tmp_path / f"l{i}.nii.gz", "nifti")))
        fg_values.append(image[label == 5].astype(np.float32))
    cfg = tiny_config(
        tmp_path,
        tmp_path / "run",
        data={"layout": "table", "in_channels": 1, "labels": {"liver": 5}},
        transforms={"spatial_size": None, "patch_size": [8, 8, 4], "preprocess": [{"ClipZScored": {}}]},
    )
    resolved = resolve_statistics(cfg, cases, RunDir(tmp_path))
    stats = json.loads(RunDir(tmp_path).intensity_stats.read_text())
    filled = resolved.transforms.preprocess[0]["ClipZScored"]
    assert {k: filled[k] for k in ("lower", "upper", "mean", "std")} == {
        k: stats[k] for k in ("lower", "upper", "mean", "std")
    }
    assert cfg.transforms.preprocess[0]["ClipZScored"].get("mean") is None  # a new object; cfg unchanged
    pooled = np.concatenate(fg_values)
    assert stats is not None and stats["n_voxels"] == pooled.size == 3 * 60
    lo, hi = np.percentile(pooled, (0.5, 99.5))
    assert stats["lower"] == pytest.approx(lo) and stats["upper"] == pytest.approx(hi)
    assert stats["mean"] == pytest.approx(pooled.mean(), rel=1e-5)
    assert stats["std"] == pytest.approx(pooled.std(), rel=1e-5)
    args = resolved.transforms.preprocess[0]["ClipZScored"]
    assert args["mean"] == stats["mean"] and args["upper"] == stats["upper"]
    assert (tmp_path / "intensity_stats.json").is_file()
