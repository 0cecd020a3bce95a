"""A 2-fold demo study through a real Slurm: `medseg run --executor slurm --wait` trains each fold
once in a job array and ends the study in the job after it; a fold cancelled mid-training is the only
one the same command runs again, with the results of an unbroken study; a failing job names its
log; Ctrl-C with --cancel-on-interrupt cancels the jobs."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from ..conftest import ROOT, study_runs
from .conftest import Slurm, medseg

pytestmark = [pytest.mark.integration, pytest.mark.slurm]
EPOCHS = 16
OUTPUT = {"capture_output": True, "text": True, "timeout": 900}


def study(out: Path, data: Path, *extra: str) -> list[str]:
    """The tiny 2-fold demo study through Slurm, one core per job, following the jobs each second."""
    return medseg(
        "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={out}",
        "--set", f"data.root={data}",
        "--set", "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 3}",
        "--set", "transforms.spatial_size=[32, 48]",
        "--set", "model.args={channels: [4, 8, 16], strides: [2, 2], num_res_units: 1}",
        "--set", "split.n_folds=2",
        "--set", f"train.epochs={EPOCHS}",
        "--set", "train.patience=null",
        "--set", "train.batch_size=4",
        "--set", "train.val_fraction=0.2",
        "--set", "train.deterministic=true",
        "--set", "evaluate.n_worst=1",
        "--set", "preview.n_draws=1",
        "--set", "executor.cpus=1",
        "--set", "executor.poll_seconds=0.5",
        "--executor", "slurm",
        *extra,
    )  # fmt: skip


def _history(run: Path, fold: int) -> list[dict[str, str]]:
    try:
        with open(run / f"fold_{fold}" / "history.csv", newline="") as fh:
            return list(csv.DictReader(fh))
    except (FileNotFoundError, csv.Error):
        return []


@pytest.fixture(scope="module")
def studies(slurm: Slurm, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str, str]]:
    """Two studies through `--executor slurm --wait`, started together (one's Python start-ups and
    jobs fill the cores the other's leave idle): ``unbroken``, never interrupted, and ``failing``,
    whose data folder does not exist. Each: its run folder, exit code, stdout and stderr; both have
    ended, and their jobs with them, when the fixture returns."""
    failing_tmp, unbroken_tmp = tmp_path_factory.mktemp("failing"), tmp_path_factory.mktemp("unbroken")
    commands = {
        "failing": (
            failing_tmp,
            study(
                failing_tmp / "run", failing_tmp / "no-such-data", "--wait", "--set", "data.synthetic=null"
            ),
        ),
        "unbroken": (unbroken_tmp, study(unbroken_tmp / "run", unbroken_tmp / "data", "--wait")),
    }
    procs = {}  # each prints to files: a full pipe would stop one while the other is waited for
    try:
        for name, (tmp, cmd) in commands.items():
            with open(tmp / "stdout", "w") as out, open(tmp / "stderr", "w") as err:
                procs[name] = subprocess.Popen(cmd, env=slurm.env, cwd=tmp, stdout=out, stderr=err)
        for proc in procs.values():
            proc.wait(timeout=900)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {
        name: (
            tmp / "run",
            procs[name].returncode,
            (tmp / "stdout").read_text(),
            (tmp / "stderr").read_text(),
        )
        for name, (tmp, _) in commands.items()
    }


@pytest.fixture(scope="module")
def unbroken(studies: dict[str, tuple[Path, int, str, str]]) -> tuple[Path, str]:
    """The study run once through `--executor slurm --wait`, never interrupted; its folder and output."""
    run, code, out, err = studies["unbroken"]
    assert code == 0, out + err
    return run, out


def test_each_fold_is_trained_once_and_the_report_job_ends_the_study(unbroken):
    run, output = unbroken
    submitted = re.search(r"submitted: job array (\d+) \(folds 0, 1\) and job (\d+) \(report", output)
    array, report = submitted.groups()
    assert f"fold 0: queued (job {array}_0" in output
    assert f"report: waiting for the folds (job {report})" in output
    assert re.search(r"fold 1: training epoch \d+/16", output)
    assert "fold 0: done" in output and "fold 1: done" in output
    assert output.rstrip().endswith(f"report: done: {run / 'report.html'}")
    logs = sorted(p.name for p in (run / "jobs").glob("*.log"))
    assert logs == [f"fold_0-{array}.log", f"fold_1-{array}.log", f"report-{report}.log"]
    for fold in (0, 1):
        assert [int(r["epoch"]) for r in _history(run, fold)] == list(range(1, EPOCHS + 1))
        log = (run / "jobs" / f"fold_{fold}-{array}.log").read_text()
        assert log.count("training; ") == 1 and "the report is left to the report stage" in log
        assert "logging the ensemble" not in log and "done in" not in log  # the report job's work
    report_log = (run / "jobs" / f"report-{report}.log").read_text()
    assert "logging the ensemble of 2 folds" in report_log and "done in" in report_log
    assert sorted(json.loads((run / "summary.json").read_text())["folds"]) == ["0", "1"]
    assert (run / "summary.json").stat().st_mtime >= max(
        (run / f"fold_{k}" / "metrics.csv").stat().st_mtime for k in (0, 1)
    )

    client, runs = study_runs(run)
    assert sorted(r.data.tags.get("medseg.kind") for r in runs) == ["fold", "fold", "pipeline"]
    (parent,) = [r for r in runs if r.data.tags.get("medseg.kind") == "pipeline"]
    assert parent.info.status == "FINISHED" and "cv/dice/mean" in parent.data.metrics
    for fold_run in (r for r in runs if r.data.tags.get("medseg.kind") == "fold"):
        assert fold_run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        steps = [m.step for m in client.get_metric_history(fold_run.info.run_id, "epoch/train_loss")]
        assert sorted(steps) == list(range(1, EPOCHS + 1))  # every epoch once


@pytest.mark.slow  # minutes on 2 cores: `make test-slow`
def test_a_cancelled_fold_alone_runs_again_and_the_results_match_an_unbroken_study(slurm, unbroken, tmp_path):
    reference, _ = unbroken
    run, data = tmp_path / "run", tmp_path / "data"
    first = subprocess.run(study(run, data), env=slurm.env, cwd=tmp_path, **OUTPUT)
    assert first.returncode == 0 and "follow them: the same command with --wait" in first.stdout, first.stderr
    array = re.search(r"job array (\d+)", first.stdout).group(1)
    # the same command with --wait follows the jobs already queued instead of submitting them again
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    follower = subprocess.Popen(study(run, data, "--wait"), env=slurm.env, cwd=tmp_path, **pipes)
    deadline = time.monotonic() + 300
    while len(_history(run, 1)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    slurm.run("scancel", f"{array}_1")
    out, err = follower.communicate(timeout=600)
    trained = len(_history(run, 1))
    if not 0 < trained < EPOCHS:
        pytest.skip(f"could not cancel fold 1 mid-training (it had {trained} epochs)")
    assert "jobs of an earlier submission are still queued or running" in out and "submitted:" not in out
    log = run / "jobs" / f"fold_1-{array}.log"
    assert f"fold 1: failed (CANCELLED); log: {log}" in out, out
    assert re.search(r"report: failed \(FAILED\); log: .*/report-\d+\.log", out), out
    assert follower.returncode == 1 and "did not finish: 2 job(s) failed" in err, err
    assert "fold(s) 1 not done" in next((run / "jobs").glob("report-*.log")).read_text()

    again = subprocess.run(study(run, data, "--wait"), env=slurm.env, cwd=tmp_path, **OUTPUT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"submitted: job array \d+ \(folds 1\) and job \d+ \(report", again.stdout), again.stdout
    assert len(list((run / "jobs").glob("fold_0-*.log"))) == 1  # fold 0 was never run again
    for fold in (0, 1):
        ours, theirs = run / f"fold_{fold}", reference / f"fold_{fold}"
        losses = [[row["train_loss"] for row in _history(d, fold)] for d in (run, reference)]
        assert losses[0] == losses[1]
        assert (ours / "metrics.csv").read_bytes() == (theirs / "metrics.csv").read_bytes()
        for pred in (theirs / "predictions").iterdir():
            assert (ours / "predictions" / pred.name).read_bytes() == pred.read_bytes()
        for name in ("best.pt", "last.pt"):
            a, b = (torch.load(d / "checkpoints" / name, weights_only=True) for d in (ours, theirs))
            assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    assert (
        json.loads((run / "summary.json").read_text())["fold_mean"]
        == json.loads((reference / "summary.json").read_text())["fold_mean"]
    )


def test_a_failing_job_names_its_log_and_the_command_fails(studies):
    run, returncode, stdout, stderr = studies["failing"]  # its data folder does not exist
    assert returncode == 1, stdout + stderr
    array = re.search(r"job array (\d+)", stdout).group(1)
    for fold in (0, 1):
        log = run / "jobs" / f"fold_{fold}-{array}.log"
        assert f"fold {fold}: failed (FAILED); log: {log}" in stdout
        assert "error: data.root" in log.read_text() and "Traceback" not in log.read_text()
    assert "did not finish: 3 job(s) failed" in stderr and "Traceback" not in stderr


def test_ctrl_c_while_waiting_cancels_the_jobs_when_asked_to(slurm, tmp_path):
    cmd = study(tmp_path / "run", tmp_path / "data", "--wait", "--cancel-on-interrupt")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    proc = subprocess.Popen(cmd, env=slurm.env, cwd=tmp_path, **pipes)
    deadline = time.monotonic() + 120
    while not (tmp_path / "run" / "jobs" / "submitted.json").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    record = json.loads((tmp_path / "run" / "jobs" / "submitted.json").read_text())
    assert proc.returncode == 130, out + err
    assert f"cancelled: {record['array']} {record['final']}" in out
    deadline = time.monotonic() + 60
    while slurm.jobs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert slurm.jobs() == []
