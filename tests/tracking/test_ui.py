"""`medseg ui` on a project store: two studies side by side through the MLflow REST API, no library
noise, one clear line for a missing or damaged store and a port in use or out of range, and nothing
left answering when `medseg ui` is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.tracking.ui import training_view_url, ui_command

from .test_project_store import _study


def test_ui_names_a_missing_or_damaged_store_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ui", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no MLflow store: neither a run folder" in result.output
    (tmp_path / "mlflow.db").write_bytes(b"")
    result = CliRunner().invoke(app, ["ui", str(tmp_path)])
    assert result.exit_code == 1 and "mlflow.db: empty file (0 bytes), not an MLflow store" in result.output
    (tmp_path / "mlflow.db").write_text("some notes, not a database\n" * 20)
    result = CliRunner().invoke(app, ["ui", str(tmp_path)])
    assert (
        result.exit_code == 1 and "mlflow.db: not an MLflow store (file is not a database)" in result.output
    )


def test_ui_refuses_a_port_in_use_or_out_of_range(tmp_path: Path) -> None:
    _study(tmp_path, "a")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["ui", str(tmp_path), "--port", str(port)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"--port {port}: 127.0.0.1:{port} is in use" in result.output and "--port 0" in result.output
    result = CliRunner().invoke(app, ["ui", str(tmp_path / "a"), "--port", "99999"])
    assert result.exit_code == 1 and "--port 99999: a port is a number from 1 to 65535" in result.output


def test_ui_runs_light_on_this_host_only(tmp_path: Path) -> None:
    cmd = ui_command(f"sqlite:///{tmp_path / 'mlflow.db'}", "127.0.0.1", 5123)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--uvicorn-opts") + 1] == "--no-access-log"
    url = training_view_url("http://127.0.0.1:5123", "3")
    assert url == "http://127.0.0.1:5123/#/experiments/3/runs?workflowType=machine_learning"


def _api(base: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{endpoint}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.load(answer))


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().decode() if ready else ""


def _serving(store: Path) -> list[int]:
    """Processes whose command line names the store (the guard, the server, its uvicorn worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(store) in (entry / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_two_studies_side_by_side_quietly_and_nothing_left_after_kill_9(tmp_path: Path) -> None:
    project = tmp_path / "runs"
    _study(project, "a")
    _study(project, "b", name="other-study")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the server's log file lands here
    cmd = [sys.executable, "-m", "medseg", "ui", str(project), "--port", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = (project / "mlflow.db").resolve()
    try:
        line = _first_line(proc, 180)
        assert line.startswith("MLflow UI: http://127.0.0.1:"), (line, proc.stderr.read1().decode())  # type: ignore[union-attr]
        base = line.split()[-1].split("/#")[0].rstrip("/")
        experiments = _api(base, "experiments/search", {"max_results": 100})["experiments"]
        ids = {e["name"]: e["experiment_id"] for e in experiments}
        assert {"tiny", "other-study"} <= set(ids)  # each study its own experiment, one store
        found = _api(base, "runs/search", {"experiment_ids": list(ids.values()), "max_results": 100})
        runs = found["runs"]
        parents = {
            r["info"]["run_name"]: r["info"]["experiment_id"]
            for r in runs
            if {"key": "medseg.kind", "value": "pipeline"} in r["data"]["tags"]
        }
        assert parents == {"a": ids["tiny"], "b": ids["other-study"]}
        scores = sorted(
            m["value"] for r in runs for m in r["data"].get("metrics", []) if m["key"] == "test/dice/mean"
        )
        assert scores == pytest.approx([0.5, 0.5, 0.6, 0.6])
        (log,) = tmp_path.glob("medseg-ui-*.log")
        assert "/api/2.0/mlflow" not in log.read_text()  # no access log
        assert len(_serving(store)) >= 2  # the guard and the server
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while _serving(store) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _serving(store) == []  # the guard saw its pipe close and ended the server's group
        with pytest.raises(OSError):
            urllib.request.urlopen(base + "/health", timeout=2)
        assert proc.stderr is not None
        noise = proc.stderr.read().decode()
        assert noise == "", noise  # nothing from MLflow, uvicorn or alembic reaches the terminal
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _serving(store):  # only what this test started, should the guard have failed
            os.kill(pid, signal.SIGKILL)
