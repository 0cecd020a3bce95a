"""`--executor local --devices`: the jobs as processes here, one device each, the final job last;
and a tiny study run that way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.cluster.jobs import Group, Index
from medseg.cluster.local import LocalJobs

from ..conftest import ROOT

# each task records its device and when it ran, then sleeps a little
TASK = (
    "import json, os, sys, time; t0 = time.time(); time.sleep(0.6); "
    "json.dump({'device': os.environ.get('CUDA_VISIBLE_DEVICES'), 'start': t0, 'end': time.time(), "
    "'threads': os.environ['OMP_NUM_THREADS']}, open(sys.argv[1], 'w'))"
)
SLOW_SECOND_FAILS_FIRST = "import sys, time; time.sleep(30 * (sys.argv[1] == '1')); sys.exit(3)"


def _run(jobs: LocalJobs, timeout: float = 60) -> dict:
    jobs.submit()
    deadline = time.monotonic() + timeout
    states = jobs.poll()
    while any(s.phase != "ended" for s in states.values()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        states = jobs.poll()
    return states


def test_one_process_per_device_at_a_time_and_the_final_job_after_them(tmp_path):
    group = Group(
        name="medseg-t",
        kind="fold",
        indices=[0, 1, 2, 3, 4],
        argv=[sys.executable, "-c", TASK, Index(prefix=str(tmp_path / "task_"), suffix=".json")],
        final_name="report",
        final_argv=[sys.executable, "-c", TASK, str(tmp_path / "final.json")],
        folder=tmp_path / "jobs",
    )
    states = _run(LocalJobs(group, ["2", "5"], slots=1, cores=4))
    assert all(s.ok for s in states.values())
    tasks = [json.loads((tmp_path / f"task_{i}.json").read_text()) for i in range(5)]
    assert {t["device"] for t in tasks} == {"2", "5"} and {t["threads"] for t in tasks} == {"2"}
    for t in tasks:  # never two processes on one device, never more than two at once
        beside = [u for u in tasks if u is not t and u["start"] < t["end"] and t["start"] < u["end"]]
        assert all(u["device"] != t["device"] for u in beside)
        assert sum(u["start"] <= t["start"] < u["end"] for u in tasks) <= 2
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["start"] >= max(t["end"] for t in tasks)
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "jobs").glob("*.log")) == [
        "fold_0", "fold_1", "fold_2", "fold_3", "fold_4", "report",
    ]  # fmt: skip


def test_a_failing_process_is_reported_and_cancel_stops_the_rest(tmp_path):
    group = Group(
        name="medseg-t",
        kind="fold",
        indices=[0, 1],
        argv=[sys.executable, "-c", SLOW_SECOND_FAILS_FIRST, Index()],
        final_name="report",
        final_argv=[sys.executable, "-c", "pass"],
        folder=tmp_path / "jobs",
    )
    jobs = LocalJobs(group, None, slots=2, cores=2)
    jobs.submit()
    deadline = time.monotonic() + 30
    while jobs.poll()[0].phase != "ended" and time.monotonic() < deadline:
        time.sleep(0.05)
    states = jobs.poll()
    assert (states[0].detail, states[0].ok) == ("exit 3", False) and states[1].phase == "running"
    t0 = time.monotonic()
    jobs.cancel()
    states = jobs.poll()
    assert time.monotonic() - t0 < 10 and states[1].phase == "ended" and states[None].detail == "cancelled"


@pytest.mark.slow  # minutes on 2 cores: `make test-slow`
@pytest.mark.integration
def test_a_study_as_local_processes_one_device_each(tmp_path):
    cmd = [
        sys.executable, "-m", "medseg", "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={tmp_path / 'run'}",
        "--set", f"data.root={tmp_path / 'data'}",
        "--set", "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 3}",
        "--set", "transforms.spatial_size=[32, 48]",
        "--set", "model.args={channels: [4, 8, 16], strides: [2, 2], num_res_units: 1}",
        "--set", "split.n_folds=2",
        "--set", "train.epochs=4",
        "--set", "train.batch_size=4",
        "--set", "train.val_fraction=0.2",
        "--set", "train.device=cpu",
        "--set", "evaluate.n_worst=1",
        "--set", "preview.n_draws=1",
        "--executor", "local", "--devices", "0,1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    submitted = "submitted: 2 fold process(es) on this machine (one per device of 0,1), then the report"
    assert submitted in done.stdout
    assert "fold 0: done" in done.stdout and "fold 1: done" in done.stdout
    assert f"report: done: {tmp_path / 'run' / 'report.html'}" in done.stdout
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())
    assert {k: v["done_epochs"] for k, v in state["folds"].items()} == {"0": 4, "1": 4}
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert "nothing to do: every fold is done and the report written" in again.stdout


def test_devices_need_the_local_executor(tmp_path, monkeypatch):
    """The command line's refusals, in process (they come before any work; a fresh process would
    spend its seconds importing what they never reach)."""
    monkeypatch.chdir(tmp_path)
    args = ["run", str(ROOT / "pipelines" / "demo.yaml"), "--devices", "0,1"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1 and "go with --executor slurm or local" in done.stderr
    done = CliRunner().invoke(app, [*args, "--executor", "slurm"])
    assert done.exit_code == 1
    assert "--devices 0,1: give device numbers such as 0,1,2,3, with --executor local" in done.stderr
    assert not list(tmp_path.iterdir())  # refused before writing anything
