"""The ISIC pipeline unchanged on the real PH2 images (slow; skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_isic_pipeline_runs_on_real_ph2_cases(ph2_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", str(ROOT / "pipelines" / "isic.yaml"), "--set", f"data.root={ph2_root}",
            "--set", f"output_dir={out}", "--set", "split.folds=[0]", "--set", "train.epochs=3",
            "--set", "transforms.spatial_size=[96, 128]"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    datalist = json.loads((out / "datalist.json").read_text())
    assert len(datalist["cases"]) == 150 and datalist["bad_cases"] == []
    splits = json.loads((out / "splits.json").read_text())
    patients = {c["id"]: c["patient"] for c in datalist["cases"]}
    for fold in splits:
        assert not {patients[i] for i in fold["train"]} & {patients[i] for i in fold["val"]}
    summary = json.loads((out / "summary.json").read_text())
    # three epochs at low resolution already separate lesion from skin on real images
    assert summary["overall"]["skin_lesion"]["dice"]["mean"] > 0.6


def test_ph2_ingest_reads_every_real_case(ph2_root: Path) -> None:
    from medseg.config.models import DataConfig
    from medseg.data.datalist import build_datalist

    cases, bad = build_datalist(DataConfig(root=ph2_root))
    assert len(cases) == 150 and not bad
    assert {c.diagnosis for c in cases} == {"common_nevus", "atypical_nevus", "melanoma"}
    assert all(c.shape is not None and c.shape[0] > 500 and c.shape[1] > 700 for c in cases)
