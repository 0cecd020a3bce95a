"""A planned study runs unchanged, chooses its post-processing from cross-validation, and keeps
its fingerprint; `predict` applies the choice."""

from __future__ import annotations

import json

import pytest
import yaml

from medseg.config.load import load_pipeline
from medseg.pipeline import run
from medseg.plan.study import plan_study

from ..conftest import fixed_step_times, make_dataset


@pytest.mark.slow  # a whole planned study (a minute on 2 cores): `make test-slow`
def test_a_plan_runs_unchanged_and_chooses_post_processing(tmp_path, monkeypatch):
    from medseg.plan import calibrate

    data = make_dataset(tmp_path / "data", n_cases=20, height=48, width=64)

    # step times of a slow machine (0.15 s for a UNet on 32x40 patches, batch 2), so that
    # a busy one plans the same study
    monkeypatch.setattr(calibrate, "measure", fixed_step_times(0.15 / 2560))
    out = tmp_path / "plans" / "syn.yaml"
    summary = plan_study(data, "isic", out, device="cpu", budget=90.0)
    cfg = load_pipeline(out, [f"output_dir={tmp_path / 'run'}", "tracking.enabled=false"])
    run_dir = run(cfg)
    assert (run_dir / "fingerprint.json").read_text() == (out.parent / "syn.fingerprint.json").read_text()
    choice = json.loads((run_dir / "postprocessing.json").read_text())
    assert choice["value"] in (False, "foreground", [1]) and set(choice["mean_dice"]) == {
        "none",
        "foreground",
        "each",
        "none_filled",
        "foreground_filled",
        "each_filled",
    }
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert written["infer"]["largest_component"] == choice["value"]  # what predict reads
    assert written["infer"]["fill_holes"] is choice["fill_holes"]
    report = json.loads((run_dir / "summary.json").read_text())
    assert report["postprocessing"]["value"] == choice["value"]
    assert "Post-processing (chosen from cross-validation)" in (run_dir / "report.md").read_text()
    timing = json.loads((run_dir / "timing.json").read_text())
    assert timing["total_seconds"] > 0 and summary["expected_seconds"] > 0
    run(cfg)  # the same plan again: the written choice is not a changed setting
