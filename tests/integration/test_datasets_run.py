"""nnU-Net v2 and Decathlon data sets end to end: `medseg plan` finds the layout itself, the plan
runs for a few epochs, `medseg predict` segments the held-out images from their channel files under
nnU-Net's names, and `medseg evaluate` pairs them with the references."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config.load import load_pipeline
from medseg.data.synthetic_datasets import write_mr_decathlon, write_mr_nnunet, write_rgb_nnunet
from medseg.errors import DataError, MedsegError
from medseg.evaluate.folders import evaluate_folders
from medseg.infer.batch import predict_folder
from medseg.pipeline import run
from medseg.plan.study import plan_study
from medseg.tracking.models import load_bundle

from ..conftest import fixed_step_times
from ..infer.conftest import CPU, manifest

FEW = ["train.epochs=2", "split.n_folds=2", "tracking.enabled=false", "evaluate.uncertainty=false"]


def _plan_and_run(data: Path, tmp_path: Path, workflow: str) -> Path:
    out = tmp_path / "plans" / "study.yaml"
    summary = plan_study(data, "auto", out, device="cpu", budget=None)
    assert summary["device"] == "cpu" and f"--workflow {workflow}" in out.read_text()
    cfg = load_pipeline(out, [*FEW, f"output_dir={tmp_path / 'run'}"])
    return run(cfg)


@pytest.fixture(scope="module")
def mr_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-channel nnU-Net data set, planned and run: (data set, run folder), shared by the
    tests that only read them."""
    from medseg.plan import calibrate

    tmp = tmp_path_factory.mktemp("mr")
    data = write_mr_nnunet(tmp / "Dataset101_MR", n_train=8, n_test=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calibrate, "measure", fixed_step_times(0.0, fixed=0.05))  # the layout is under test
        return data, _plan_and_run(data, tmp, "nnunet")


def test_a_two_channel_nnunet_data_set_is_planned_run_and_predicted(mr_study, tmp_path):
    data, run_dir = mr_study
    config = (run_dir / "config.yaml").read_text()
    assert "layout: nnunet" in config and "channel_names: [T1, T2]" in config and "channel_files: 2" in config
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["classes"] == ["oedema", "core"]
    out = tmp_path / "pred"
    done = predict_folder(load_bundle(str(run_dir)), data / "imagesTs", out, CPU)
    assert (done["done"], done["failed"]) == (2, 0)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [
        "mr_008.nii.gz",
        "mr_009.nii.gz",
    ]  # nnU-Net's names
    for name in ("mr_008.nii.gz", "mr_009.nii.gz"):
        written, ref = nib.load(out / name), nib.load(data / "labelsTs" / name)
        assert written.shape == ref.shape and np.allclose(written.affine, ref.affine)  # the input's geometry
    scores = evaluate_folders(out, data / "labelsTs", tmp_path / "eval")
    assert scores["n_cases"] == 2 and set(scores["labels"]) == {"label_1", "label_2", "mean"}
    rows = {r["key"]: r for r in manifest(out)}
    assert rows["mr_008"]["n_files"] == "2"


def test_predict_refuses_a_data_set_whose_channels_differ(mr_study, tmp_path):
    data, shared_run = mr_study
    run_dir = tmp_path / "run"
    shutil.copytree(shared_run, run_dir)  # its checkpoint is rewritten below
    other = tmp_path / "Dataset105_Swapped"
    shutil.copytree(data, other)
    meta = json.loads((other / "dataset.json").read_text())
    (other / "dataset.json").write_text(json.dumps({**meta, "channel_names": {"0": "T2", "1": "T1"}}))
    with pytest.raises(
        DataError, match=r"the data set's channels are \['T2', 'T1'\], the model's \['T1', 'T2'\]"
    ):
        predict_folder(load_bundle(str(run_dir)), other / "imagesTs", tmp_path / "pred", CPU)
    assert not (tmp_path / "pred" / "manifest.csv").exists()
    best = run_dir / "fold_0" / "checkpoints" / "best.pt"
    state = torch.load(best, map_location="cpu", weights_only=True)
    assert state["channel_names"] == ["T1", "T2"]  # the checkpoint records what the network saw
    torch.save({**state, "channel_names": ["T2", "T1"]}, best)  # a fold trained on the swapped data set
    refused = r"best.pt: trained on the channels \[.T2., .T1.\], but the configuration"
    with pytest.raises(MedsegError, match=refused):
        load_bundle(str(run_dir))


@pytest.mark.slow  # minutes on 2 cores: `make test-slow`
def test_a_decathlon_task_is_planned_run_and_predicted(tmp_path):
    data = write_mr_decathlon(tmp_path / "Task01_MR", n_train=8, n_test=2)
    run_dir = _plan_and_run(data, tmp_path, "decathlon")
    assert "layout: decathlon" in (run_dir / "config.yaml").read_text()
    out = tmp_path / "pred"
    done = predict_folder(load_bundle(str(run_dir)), data / "imagesTs", out, CPU)
    assert (done["done"], done["failed"]) == (2, 0)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["mr_008.nii.gz", "mr_009.nii.gz"]
    assert evaluate_folders(out, data / "labelsTs", tmp_path / "eval")["n_cases"] == 2


def test_an_rgb_picture_data_set_is_planned_run_and_predicted_from_the_command_line(tmp_path, monkeypatch):
    """`medseg plan` as the command line calls it, in process, from fixed step times: the layout
    is under test here; the calibration's own run from the command line is in
    tests/plan/test_plan_cli.py."""
    from medseg.plan import calibrate

    monkeypatch.setattr(calibrate, "measure", fixed_step_times(0.0, fixed=0.05))
    data = write_rgb_nnunet(tmp_path / "Dataset102_Pics", n_train=10, n_test=2)
    plans = tmp_path / "plans"
    args = ["plan", str(data), "--device", "cpu", "--out", str(plans / "pics.yaml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output[-2000:]
    assert f"plan: {plans / 'pics.yaml'}" in result.output
    assert "layout: nnunet" in (plans / "pics.yaml").read_text()
    cfg = load_pipeline(plans / "pics.yaml", [*FEW, f"output_dir={tmp_path / 'run'}"])
    run_dir = run(cfg)
    out = tmp_path / "pred"
    done = predict_folder(load_bundle(str(run_dir)), data / "imagesTs", out, CPU)
    assert (done["done"], done["failed"]) == (2, 0)
    assert sorted(p.name for p in out.glob("pic_*[0-9].png")) == ["pic_010.png", "pic_011.png"]
    scores = evaluate_folders(out, data / "labelsTs", tmp_path / "eval")
    assert scores["n_cases"] == 2  # predict's own outputs pair with the references by name
