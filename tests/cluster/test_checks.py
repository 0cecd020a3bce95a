"""What jobs on several machines are refused before anything is submitted: a tracking store they
would not share, sbatch options medseg sets itself; and the sbatch options the executor settings make."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from medseg.cli import app
from medseg.cluster.checks import check_tracking
from medseg.cluster.slurm import resources
from medseg.config.models import ExecutorConfig, TrackingConfig
from medseg.errors import ConfigError
from medseg.run_dir import RunDir

from ..conftest import ROOT


@pytest.mark.parametrize(
    "uri",
    [
        None,
        "http://mlflow:5000",
        "https://mlflow.lab/",
        "postgresql://ann:pw@db/mlflow",
        "mysql+pymysql://db/x",
    ],
)
def test_a_store_every_node_reaches_is_accepted(uri, tmp_path):
    check_tracking(TrackingConfig(uri=uri), RunDir(tmp_path / "run"))


def test_the_run_folders_own_or_its_project_sqlite_store_is_accepted(tmp_path):
    check_tracking(TrackingConfig(uri=f"sqlite:///{tmp_path}/run/mlflow.db"), RunDir(tmp_path / "run"))
    project_store = f"sqlite:///{tmp_path}/mlflow.db"  # beside the run folder
    check_tracking(TrackingConfig(uri=project_store), RunDir(tmp_path / "run"))
    for store in ("project", "run"):
        check_tracking(TrackingConfig(store=store), RunDir(tmp_path / "run"))
    check_tracking(TrackingConfig(enabled=False, uri="file:///tmp/x"), RunDir(tmp_path / "run"))


@pytest.mark.parametrize(
    "uri", ["sqlite:////tmp/elsewhere.db", "file:///tmp/mlruns", "./mlruns", "sqlite:///m.db"]
)
def test_a_store_of_one_machine_is_refused_saying_what_to_set(uri, tmp_path):
    with pytest.raises(ConfigError) as err:
        check_tracking(TrackingConfig(uri=uri), RunDir(tmp_path / "run"))
    assert f"tracking.uri '{uri}'" in str(err.value) and "http://host:5000" in str(err.value)


def test_credentials_in_a_refused_uri_are_masked(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_tracking(TrackingConfig(uri="ftp://ann:s3cret@host/x"), RunDir(tmp_path))
    assert "s3cret" not in str(err.value) and "ftp://***@host/x" in str(err.value)


def test_the_settings_become_sbatch_options():
    settings = ExecutorConfig(
        partition="gpu", gpus=2, cpus=8, memory="64G", time_limit="1-12:00:00", sbatch_options=["--qos=long"]
    )
    assert resources(settings) == [
        "--cpus-per-task=8", "--partition=gpu", "--gres=gpu:2", "--mem=64G", "--time=1-12:00:00",
        "--qos=long",
    ]  # fmt: skip
    assert "--gres=gpu:2" not in resources(settings, gpus=False)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sbatch_options": ["--array=0-4"]}, "--array is set by medseg"),
        ({"sbatch_options": ["--account lab"]}, "expected one option word"),
        ({"sbatch_options": ["-A", "lab"]}, "expected one option word"),
        ({"memory": "lots"}, "memory"),
        ({"time_limit": "12h"}, "time_limit"),
        ({"partition": "gpu; rm -rf ~"}, "partition"),
        ({"cpus": 0}, "cpus"),
    ],
)
def test_bad_executor_settings_are_refused_naming_the_key(settings, message):
    with pytest.raises(ValidationError, match=message):
        ExecutorConfig.model_validate(settings)


def test_the_command_refuses_such_a_store_before_submitting(tmp_path, monkeypatch):
    """The command line in process: the refusal comes before any work, and a fresh process would
    spend its seconds importing what it never reaches."""
    args = [
        "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={tmp_path / 'run'}", "--set", f"tracking.uri=sqlite:///{tmp_path}/elsewhere.db",
        "--executor", "slurm",
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 1 and "Traceback" not in done.stderr
    assert "jobs on other machines of the cluster would each write to a copy" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing submitted, nothing written


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--parts", "2"], "--parts go with --executor slurm or local"),
        (["--executor", "slurm", "--part", "1/2"], "give --parts N (not --part)"),
        (["--executor", "slurm"], "give --parts N (not --part)"),
        (["--executor", "slurm", "--parts", "1"], "--parts"),
    ],
)
def test_predict_options_that_do_not_go_together_are_refused(extra, message, tmp_path):
    cmd = [sys.executable, "-m", "medseg", "predict", "-m", str(tmp_path), "-i", str(tmp_path)]
    cmd += ["-o", str(tmp_path / "out"), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode in (1, 2) and message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "jobs").exists()
