"""The planned training is nnU-Net's: every training case of a fold trained on and the last epoch
kept, Dice of the foreground classes plus cross-entropy, the Dice over the batch in 2D and per case
in 3D (nnU-Net 2.8.1: ``do_bg=False``; ``batch_dice`` true for 2d, false for a 3d_fullres without
a cascade); AdamW at 0.005 in 2D (measured on PH2), 0.002 in 3D. Step times are fixed: the
calibration has its own tests."""

from __future__ import annotations

import yaml

from medseg.config.load import load_pipeline
from medseg.plan.study import plan_study

from ..conftest import fixed_step_times, make_dataset
from .test_plan_3d import _planned


def _train(path):
    text = path.read_text()
    return yaml.safe_load(text)["train"], text


def test_a_2d_plan_trains_on_every_training_case_with_nnunets_batch_dice(tmp_path, monkeypatch):
    from medseg.plan import calibrate

    monkeypatch.setattr(calibrate, "measure", fixed_step_times(0.05 / 2560, fixed=0.02))
    data = make_dataset(tmp_path / "data", n_cases=10, height=48, width=64)
    out = tmp_path / "p.yaml"
    plan_study(data, "isic", out, device="cpu", budget=None)
    train, text = _train(out)
    assert train["val_fraction"] == 0 and train["patience"] is None
    assert train["loss"] == {"name": "DiceCE", "args": {"include_background": False, "batch": True}}
    assert "the last epoch kept (nnU-Net's rule)" in text and "Dice over the batch (nnU-Net's 2D)" in text
    assert train["optimizer"]["lr"] == 0.005 and "optimizer:  # AdamW, cosine to 1e-6; 0.005 in 2D" in text
    cfg = load_pipeline(out)
    assert cfg.train.loss.args["include_background"] is False and cfg.train.loss.args["softmax"] is True


def test_a_3d_plan_takes_the_dice_per_case(tmp_path, monkeypatch):
    out, _ = _planned(tmp_path, monkeypatch)
    train, text = _train(out)
    assert train["val_fraction"] == 0
    assert train["loss"] == {"name": "DiceCE", "args": {"include_background": False, "batch": False}}
    assert "per case (nnU-Net's 3D full resolution)" in text
    assert train["optimizer"]["lr"] == 0.002 and "0.002 in 3D" in text
