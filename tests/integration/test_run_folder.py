"""One run folder, many hands: reruns with changed settings, a second run started beside the first,
and `--fold K` jobs working on one folder at the same time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from medseg.cli import app
from medseg.errors import ConfigError
from medseg.io.lock import Busy
from medseg.pipeline import run
from medseg.run_dir import RunDir

from ..conftest import ROOT, make_dataset, study_runs, tiny_config


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "d", n_cases=12, height=32, width=40)


def test_a_rerun_with_other_settings_is_refused_extended_or_forced(data, tmp_path):
    out = tmp_path / "run"
    run(tiny_config(data, out, tracking={"enabled": False}))
    saved = (out / "config.yaml").read_text()
    changed = tiny_config(
        data, out, seed=7, transforms={"spatial_size": [48, 48]}, tracking={"enabled": False}
    )
    with pytest.raises(ConfigError) as err:
        run(changed)
    assert "these differ: seed, transforms.spatial_size." in str(err.value)
    assert "--force" in str(err.value) and "train.epochs" in str(err.value)
    assert (out / "config.yaml").read_text() == saved  # nothing rewritten
    # a config.yaml written before a key existed is read with that key's default
    old = yaml.safe_load(saved)
    del old["data"]["max_image_pixels"]
    (out / "config.yaml").write_text(yaml.safe_dump(old))
    # more epochs: the documented extension
    run(
        tiny_config(
            data, out, train={"epochs": 2, "batch_size": 4, "val_fraction": 0.2}, tracking={"enabled": False}
        )
    )
    assert len((out / "fold_0" / "history.csv").read_text().splitlines()) == 3
    with pytest.raises(ConfigError, match="these differ: train.epochs"):  # fewer than trained
        run(tiny_config(data, out, tracking={"enabled": False}))
    run(changed, force=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 7
    assert len((out / "fold_0" / "history.csv").read_text().splitlines()) == 2  # trained afresh


def test_a_second_run_in_a_held_folder_fails_at_once(data, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(data, out, tracking={"enabled": False})
    with RunDir(out).running(None):
        t0 = time.perf_counter()
        with pytest.raises(Busy, match=rf"{out} is in use by medseg process {os.getpid()} on "):
            run(cfg)
        assert time.perf_counter() - t0 < 5
        with pytest.raises(Busy):
            run(cfg.model_copy(update={"split": cfg.split.model_copy(update={"folds": [1]})}))
    with RunDir(out).running([1]):
        with pytest.raises(Busy, match=f"fold 1 of {out} is in use"):
            run(cfg.model_copy(update={"split": cfg.split.model_copy(update={"folds": [1]})}))
        with pytest.raises(Busy, match=f"{out} is in use"):
            run(cfg)  # the whole study needs the folder alone
    assert sorted(p.name for p in out.iterdir()) == [".locks"]  # refused before writing anything


def _command(out: Path, data: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "medseg", "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={out}",
        "--set", f"data.root={data}",
        "--set", "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 3}",
        "--set", "transforms.spatial_size=[32, 48]",
        "--set", "model.args={channels: [4, 8, 16], strides: [2, 2], num_res_units: 1}",
        "--set", "split.n_folds=2",
        "--set", "train.epochs=6",
        "--set", "train.batch_size=4",
        "--set", "train.val_fraction=0.2",
        "--set", "evaluate.n_worst=1",
        "--set", "preview.n_draws=1",
        *extra,
    ]  # fmt: skip


def test_fold_jobs_share_a_folder_safely_and_a_whole_run_beside_them_is_refused(tmp_path):
    """Two `--fold K` jobs started together on one new folder (synthetic data not yet made): one
    data set, one MLflow pipeline run, one run per fold with each epoch logged once, both folds in
    run_state.json and in the report; a whole run started meanwhile fails at once."""
    out, data = tmp_path / "run", tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    jobs = [
        subprocess.Popen(
            _command(out, data, "--fold", str(k)),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in (0, 1)
    ]
    deadline = time.time() + 120
    while not (out / ".locks" / "fold_1.lock").is_file() and time.time() < deadline:
        time.sleep(0.1)
    # the whole run as the command line runs it, in this process (no second Python start-up
    # competing with the jobs for the cores)
    whole = CliRunner().invoke(app, _command(out, data)[3:])
    logs = [job.communicate(timeout=600)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], logs
    assert whole.exit_code == 1 and f"{out} is in use by medseg process" in whole.output, whole.output
    assert "Traceback" not in whole.output and isinstance(whole.exception, SystemExit)
    state = json.loads((out / "run_state.json").read_text())
    assert {k: v["done_epochs"] for k, v in state["folds"].items()} == {"0": 6, "1": 6}
    client, runs = study_runs(out)
    assert sorted(r.data.tags.get("medseg.kind") for r in runs) == ["fold", "fold", "pipeline"]
    for fold_run in (r for r in runs if r.data.tags.get("medseg.kind") == "fold"):
        steps = [m.step for m in client.get_metric_history(fold_run.info.run_id, "epoch/train_loss")]
        assert sorted(steps) == list(range(1, 7))
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["folds"]) == ["0", "1"]
