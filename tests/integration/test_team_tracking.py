"""A team's tracking: a real MLflow server backed by a real PostgreSQL, three `--fold K` jobs
logging to it at the same time.

The test makes its own PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 on a free
port, and stops it (and the MLflow server) by their own process ids. It skips with the reason
where PostgreSQL (Debian `postgresql`) or psycopg (the `team` extra) is not installed; `.ci/run`
installs PostgreSQL and `make test` psycopg.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import ROOT

EPOCHS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if found is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    return Path(found).resolve().parent


def _as_owner(folder: Path) -> list[str]:
    """How to run PostgreSQL's programs: as root they refuse, so as the `postgres` user."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        owner = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root without a `postgres` user for PostgreSQL to run as")
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL database URI on 127.0.0.1, its cluster in a temporary folder."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install medseg[team])")
    bindir = _pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="medseg-pg-"))  # not under pytest's root-only folder
    who = _as_owner(folder)
    data, port = folder / "data", _free_port()

    def pg(*args: str, timeout: float = 120) -> None:
        subprocess.run([*who, *args], check=True, capture_output=True, timeout=timeout)

    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-U", "medseg", "--auth=trust", "-E", "UTF8", "--no-sync")
        # a throwaway cluster: no waiting for the disk on each commit (MLflow's migrations make many)
        durability = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options = f"-h 127.0.0.1 -p {port} -k {folder} -c max_connections=50 {durability}"
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "medseg", "mlflow")
        yield f"postgresql://medseg@127.0.0.1:{port}/mlflow"
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            for _ in range(100):
                if not pid_file.exists():
                    break
                time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mlflow_server(postgres: str, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(tmp_path / "mlflow.log", "w")  # noqa: SIM115 - the server's, closed below
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            postgres,
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    text = (tmp_path / "mlflow.log").read_text()[-2000:]
                    pytest.fail(f"the MLflow server did not start: {text}")
                time.sleep(0.1)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers, by its own process group
        server.wait(timeout=60)
        log.close()


def test_three_fold_jobs_log_to_one_postgresql_backed_server(mlflow_server: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    base = [
        sys.executable, "-m", "medseg", "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={out}",
        "--set", f"data.root={tmp_path / 'data'}",
        "--set", "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 3}",
        "--set", "transforms.spatial_size=[32, 48]",
        "--set", "model.args={channels: [4, 8, 16], strides: [2, 2], num_res_units: 1}",
        "--set", "split.n_folds=3",
        "--set", f"train.epochs={EPOCHS}",
        "--set", "train.batch_size=4",
        "--set", "evaluate.n_worst=1",
        "--set", "preview.n_draws=1",
        "--set", f"tracking.uri={mlflow_server}",
        "--set", "tracking.experiment=team",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    jobs = [
        subprocess.Popen(
            [*base, "--fold", str(k)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in range(3)
    ]
    logs = [job.communicate(timeout=900)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], [log[-2000:] for log in logs]
    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("team").experiment_id])
    kinds = sorted(r.data.tags.get("medseg.kind", "") for r in runs)
    assert kinds == ["fold", "fold", "fold", "pipeline"]  # one pipeline run shared by the three jobs
    parent = next(r for r in runs if r.data.tags["medseg.kind"] == "pipeline")
    folds = [r for r in runs if r.data.tags["medseg.kind"] == "fold"]
    assert {r.data.tags.get("mlflow.parentRunId") for r in folds} == {parent.info.run_id}
    for fold_run in folds:
        history = client.get_metric_history(fold_run.info.run_id, "epoch/train_loss")
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1))  # each step exactly once
    assert sorted(r.info.run_name for r in folds) == ["fold_0", "fold_1", "fold_2"]
