"""The real PH2 pictures as an nnU-Net data set: planned like the ISIC layout they came from, and
run with the same settings to the same Dice (slow: two studies on 150 real pictures)."""

from __future__ import annotations

import json

import pytest

from medseg.config.load import load_pipeline
from medseg.config.models import DataConfig
from medseg.data.synthetic_datasets import isic_to_nnunet
from medseg.pipeline import run
from medseg.plan.fingerprint import fingerprint

from ..conftest import ROOT

pytestmark = pytest.mark.slow

SAME = [
    "train.epochs=3",
    "split.n_folds=2",
    "split.stratify_by=null",  # an nnU-Net data set has no diagnosis column
    "transforms.spatial_size=[96, 128]",
    "train.deterministic=true",
    "tracking.enabled=false",
    "evaluate.uncertainty=false",
    "evaluate.overlays=none",
]


def test_ph2_as_an_nnunet_data_set_plans_and_scores_as_the_isic_layout(ph2_root, tmp_path):
    defaults = DataConfig(root=ph2_root)
    nnunet = isic_to_nnunet(ph2_root, tmp_path / "Dataset150_PH2", defaults.image_dir, defaults.mask_dir)
    isic_fp, nn_fp = fingerprint(ph2_root, "isic"), fingerprint(nnunet)
    assert nn_fp["workflow"] == "nnunet" and nn_fp["n_cases"] == isic_fp["n_cases"] == 150
    assert nn_fp["median_shape"] == isic_fp["median_shape"] and nn_fp["channels"] == 3
    assert [c["shape"] for c in nn_fp["cases"]] == [c["shape"] for c in isic_fp["cases"]]
    pipeline = ROOT / "pipelines" / "isic.yaml"
    dice = {}
    for name, data in {
        "isic": [f"data.root={ph2_root}"],
        "nnunet": [f"data.root={nnunet}", "data.layout=nnunet", "data.class_names=null"],
    }.items():
        cfg = load_pipeline(pipeline, [*SAME, *data, f"output_dir={tmp_path / name}"])
        summary = json.loads((run(cfg) / "summary.json").read_text())
        dice[name] = summary["fold_mean"]["skin_lesion"]["dice"]["mean"]
    assert dice["nnunet"] == pytest.approx(dice["isic"], abs=1e-4), dice
