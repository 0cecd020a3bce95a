"""A run killed with SIGKILL mid-fold and started again with the same command resumes: the same
history as an unbroken run, no MLflow run duplicated or lost; a larger train.epochs extends it."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 16


def _ran(command: list[str], env: dict[str, str]) -> None:
    """Run a command to its end; a failure shows the end of what it printed."""
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def _command(out: Path, data: Path, epochs: int = EPOCHS) -> list[str]:
    return [
        str(Path(sys.executable).parent / "medseg"), "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={out}",
        "--set", f"data.root={data}",
        "--set", "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 3}",
        "--set", "transforms.spatial_size=[32, 48]",
        "--set", "model.args={channels: [4, 8, 16], strides: [2, 2], num_res_units: 1}",
        "--set", "split.n_folds=2",
        "--set", f"train.epochs={epochs}",
        "--set", "train.patience=null",
        "--set", "train.batch_size=4",
        "--set", "train.val_fraction=0.2",
        "--set", "evaluate.n_worst=1",
        "--set", "preview.n_draws=1",
    ]  # fmt: skip


def _history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _epochs_done(path: Path) -> int:
    try:
        return len(_history(path))
    except (FileNotFoundError, csv.Error):
        return 0


def _killed_mid_fold(out: Path, data: Path, env: dict[str, str]) -> list[Path]:
    """The run killed with SIGKILL during fold 0 (skipped where that could not be done), then run
    again with the same command; the temporary files the kill had left."""
    proc = subprocess.Popen(
        _command(out, data), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + 300
    while _epochs_done(out / "fold_0" / "history.csv") < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _epochs_done(out / "fold_0" / "history.csv")
    if not 0 < done < EPOCHS:
        pytest.skip(f"could not kill the run mid-fold (it had {done} epochs)")
    assert not (out / "fold_0" / "metrics.csv").exists()
    leftovers = [p for p in out.rglob("*.tmp")]
    _ran(_command(out, data), env)
    return leftovers


def test_sigkill_then_rerun_resumes_and_extends(tmp_path):
    from ..conftest import study_runs

    data, out = tmp_path / "data", tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # an unbroken run, for reference, started beside the killed one and its rerun (in the same
    # project store, on its own copy of the same synthetic set: two runs generating one data
    # folder at once would race)
    with open(tmp_path / "whole.log", "w") as log:
        reference = subprocess.Popen(
            _command(tmp_path / "whole", tmp_path / "data_whole"), stdout=log, stderr=log, env=env
        )
        try:
            leftovers = _killed_mid_fold(out, data, env)
            reference.wait(timeout=600)
        finally:
            if reference.poll() is None:
                reference.kill()
                reference.wait()
    assert reference.returncode == 0, (tmp_path / "whole.log").read_text()[-3000:]

    for fold in (0, 1):
        resumed = _history(out / f"fold_{fold}" / "history.csv")
        whole = _history(tmp_path / "whole" / f"fold_{fold}" / "history.csv")
        assert [int(r["epoch"]) for r in resumed] == list(range(1, EPOCHS + 1))
        assert [r["train_loss"] for r in resumed] == [
            r["train_loss"] for r in whole
        ]  # same draws, same weights
        assert (out / f"fold_{fold}" / "metrics.csv").read_text() == (
            tmp_path / "whole" / f"fold_{fold}" / "metrics.csv"
        ).read_text()
    assert not [p for p in out.rglob("*.tmp") if p not in leftovers]

    client, runs = study_runs(out)
    kinds = sorted(r.data.tags.get("medseg.kind") for r in runs)
    assert kinds == ["fold", "fold", "pipeline"]  # resumed, not recreated
    assert all(r.info.status == "FINISHED" for r in runs)
    fold0 = next(r for r in runs if r.data.tags.get("medseg.fold") == "0")
    steps = [m.step for m in client.get_metric_history(fold0.info.run_id, "epoch/train_loss")]
    assert sorted(steps) == list(range(1, EPOCHS + 1))  # none lost, none twice

    # extending the finished run: the same command line, in this process (no third Python start-up)
    from typer.testing import CliRunner

    from medseg.cli import app

    extended = CliRunner().invoke(app, _command(out, data, EPOCHS + 3)[1:])
    assert extended.exit_code == 0, extended.output[-3000:]
    assert [int(r["epoch"]) for r in _history(out / "fold_1" / "history.csv")] == list(range(1, EPOCHS + 4))
    assert len(study_runs(out)[1]) == 3  # the same runs, extended
