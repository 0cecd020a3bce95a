"""Tracking to a real MLflow server over HTTP (slow: the server takes a while to start)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medseg.tracking.tracker import Tracker
from tests.conftest import tiny_config


@pytest.mark.slow
def test_runs_are_logged_to_a_tracking_server(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        cfg = tiny_config(tmp_path, tmp_path / "run", tracking={"uri": uri})
        tracker = Tracker(cfg, tmp_path / "run")
        tracker.start_parent("p", {"x": 1})
        fold = tracker.start_fold(0)
        tracker.log_metrics(fold, {"val_dice": 0.5}, step=1)
        (tmp_path / "f.txt").write_text("x")
        tracker.log_artifact(fold, tmp_path / "f.txt")
        tracker.end(fold)
        tracker.end(tracker.parent_id)
        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        assert sorted(r.info.run_name for r in runs) == ["fold_0", "p"]
        fold_run = next(r for r in runs if r.info.run_name == "fold_0")
        assert fold_run.data.metrics["val_dice"] == 0.5
        assert [a.path for a in client.list_artifacts(fold_run.info.run_id)] == ["f.txt"]
    finally:
        server.terminate()
        server.wait(timeout=30)
