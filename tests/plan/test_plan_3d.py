"""A 3D case table planned end to end: the anisotropy rule, the topology it implies, and a plan
that `medseg run` accepts unchanged. Step times are fixed: the rules are under test here, the
calibration in tests/plan/test_calibrate.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from medseg.config.load import load_pipeline
from medseg.io.nifti import write_nifti
from medseg.plan.study import plan_study

from ..conftest import fixed_step_times


def _case(root, name, rng, z_spacing):
    shape = (40, 40, 8)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    centre = np.array([20, 20, 4]) + rng.integers(-4, 5, 3) * np.array([1, 1, 0])
    radii = np.array([9, 7, 2])[:, None, None, None]
    inside = (((grid - centre[:, None, None, None]) / radii) ** 2).sum(0) <= 1
    image = (rng.normal(0, 20, shape) + 300 * inside).astype(np.int16)
    affine = np.diag([0.8, 0.8, z_spacing, 1.0])
    write_nifti(root / f"{name}_img.nii.gz", image, affine)
    write_nifti(root / f"{name}_seg.nii.gz", inside.astype(np.uint8), affine)
    return f"{name},{name}_img.nii.gz,{name}_seg.nii.gz\n"


Z = [4.0, 4.0, 4.0, 5.0, 3.0, 3.2, 4.0, 4.5, 5.0, 4.0]  # 10th percentile 3.18, median 4


def _planned(tmp_path, monkeypatch):
    from medseg.plan import calibrate

    monkeypatch.setattr(calibrate, "measure", fixed_step_times(0.1 / 12800))
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = "".join(_case(data, f"c{i:02d}", rng, s) for i, s in enumerate(Z))
    (data / "cases.csv").write_text("id,image,label\n" + rows)
    out = tmp_path / "plans" / "vol.yaml"
    return out, plan_study(data, "table", out, device="cpu", budget=None)


def test_an_anisotropic_table_is_planned_by_nnunets_rules(tmp_path, monkeypatch):
    out, summary = _planned(tmp_path, monkeypatch)
    raw = yaml.safe_load(out.read_text())
    fp = json.loads((out.parent / "vol.fingerprint.json").read_text())
    assert fp["spatial_dims"] == 3 and fp["median_spacing"] == pytest.approx([0.8, 0.8, 4.0])
    # z is 5x the in-plane spacing and its 8 slices under a third of 40: the 10th percentile
    assert raw["transforms"]["spacing"] == pytest.approx([0.8, 0.8, float(np.percentile(Z, 10))], abs=1e-4)
    args = raw["model"]["args"]
    assert raw["model"]["name"] == "DynUNet"
    assert args["kernel_size"][0] == [3, 3, 1] and args["strides"][1][2] == 1  # z not pooled at first
    assert all(s == [1, 1, 1] or max(s) == 2 for s in args["strides"])
    assert raw["transforms"]["preprocess"] == [{"NormalizeIntensityd": {}}]  # not CT: per image
    assert raw["train"]["epochs"] == 1000 and summary["epochs"] == 1000  # no budget: nnU-Net's
    # a step holds the planned batch of patches: batch_size cases, patches_per_image of each
    per_step = raw["train"]["batch_size"] * raw["transforms"]["patches_per_image"]
    assert per_step == summary["batch_size"] >= 2 and raw["transforms"]["patches_per_image"] in (1, 2)
    assert raw["infer"]["mode"] == "gaussian" and raw["infer"]["tta_flips"] is False  # 3D: flips to score
    assert raw["infer"]["largest_component"] == "auto" and raw["infer"]["fill_holes"] is False  # 2D only
    text = out.read_text()
    assert "nnU-Net's anisotropy rule" in text and "3 on axes within twice the finest spacing" in text
    load_pipeline(out)  # `medseg validate` accepts it


def test_the_3d_plan_runs_unchanged(tmp_path, monkeypatch):
    out, _ = _planned(tmp_path, monkeypatch)
    fp = json.loads((out.parent / "vol.fingerprint.json").read_text())
    cfg = load_pipeline(
        out, [f"output_dir={tmp_path / 'run'}", "train.epochs=1", "split.folds=[0]", "tracking.enabled=false"]
    )
    from medseg.pipeline import run

    run_dir = run(cfg)
    with open(run_dir / "fold_0" / "metrics.csv") as fh:
        assert len(fh.read().strip().splitlines()) == 1 + 2  # header and the two held-out cases
    assert json.loads((run_dir / "fingerprint.json").read_text()) == fp
