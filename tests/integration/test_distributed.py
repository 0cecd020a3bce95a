"""Two CPU processes under torchrun (gloo) train like one process with the same seed."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _args(out: Path, data: Path) -> list[str]:
    return [
        "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={out}",
        "--set", f"data.root={data}",
        "--set", "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 5}",
        "--set", "transforms.spatial_size=[32, 48]",
        "--set", "transforms.train=[]",
        "--set", "model.args={channels: [4, 8, 16], strides: [2, 2], num_res_units: 1}",
        "--set", "split.n_folds=2",
        "--set", "train.epochs=4",
        "--set", "train.batch_size=4",
        "--set", "train.val_fraction=0.2",
        "--set", "train.device=cpu",
        "--set", "evaluate.n_worst=1",
        "--set", "preview.n_draws=1",
    ]  # fmt: skip


def _column(path: Path, key: str) -> list[float]:
    with open(path, newline="") as fh:
        return [float(r[key]) for r in csv.DictReader(fh)]


@pytest.mark.slow  # two training processes and one, whole runs (30 s on 2 cores): `make test-slow`
def test_two_gloo_processes_match_one_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    data = tmp_path / "data"
    medseg = str(Path(sys.executable).parent / "medseg")
    subprocess.run([medseg, *_args(tmp_path / "single", data)], check=True, capture_output=True, env=env)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*torchrun, "-m", "medseg", *_args(tmp_path / "ddp", data)], capture_output=True, text=True, env=env
    )
    if (
        result.returncode != 0
        and "gloo" in result.stderr.lower()
        and "not available" in result.stderr.lower()
    ):
        pytest.skip("torch was built without gloo")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 1 of 2: 2 cases per step" in result.stderr
    for fold in (0, 1):
        single = _column(tmp_path / "single" / f"fold_{fold}" / "history.csv", "train_loss")
        ddp = _column(tmp_path / "ddp" / f"fold_{fold}" / "history.csv", "train_loss")
        assert ddp == pytest.approx(single, rel=1e-3, abs=1e-4)  # same batches, gradients averaged
        dice_single = _column(tmp_path / "single" / f"fold_{fold}" / "metrics.csv", "dice")
        dice_ddp = _column(tmp_path / "ddp" / f"fold_{fold}" / "metrics.csv", "dice")
        assert dice_ddp == pytest.approx(dice_single, abs=0.01)
    from ..conftest import study_runs

    client, runs = study_runs(tmp_path / "ddp")
    assert sorted(r.data.tags.get("medseg.kind") for r in runs) == ["fold", "fold", "pipeline"]  # rank 0 only
