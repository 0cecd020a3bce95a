"""The sqlite MLflow store of a run folder: kept pointing at its own ``mlartifacts/`` when the folder
is moved, and browsed with ``medseg ui``.

MLflow stores artifact locations as absolute ``file://`` URIs. When a run folder has moved (copied
to another disk or machine), :func:`relocate` rewrites the old folder's prefix to the new one in
every place the store keeps it (experiments, runs, logged models, registered model versions); it
runs whenever medseg opens the folder's store, so a moved run keeps its artifacts and models.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from medseg.errors import MedsegError
from medseg.run_dir import RunDir

log = logging.getLogger(__name__)

COLUMNS = {
    "experiments": ("artifact_location",),
    "runs": ("artifact_uri",),
    "logged_models": ("artifact_location",),
    "model_versions": ("source", "storage_location"),
}


def relocate(run_dir: Path) -> int:
    """Point the folder's sqlite store at its own ``mlartifacts/``; how many values changed.

    Example:
        >>> relocate(Path("no/such/folder"))
        0
    """
    run = RunDir(run_dir)
    if not run.mlflow_db.is_file():
        return 0
    new = run.mlartifacts.resolve().as_uri()
    changed = 0
    with sqlite3.connect(run.mlflow_db, timeout=30) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        olds = [r[0] for r in con.execute("select artifact_location from experiments") if r[0]]
        for old in {o for o in olds if o.startswith("file://") and o.endswith("/mlartifacts") and o != new}:
            for table, columns in COLUMNS.items():
                if table not in tables:
                    continue
                for col in columns:
                    cur = con.execute(
                        f"update {table} set {col} = ? || substr({col}, ?) where substr({col}, 1, ?) = ?",
                        (new, len(old) + 1, len(old), old),
                    )
                    changed += cur.rowcount
    if changed:
        log.info("%s: the run folder has moved; %d artifact location(s) now point into it", run.root, changed)
    return changed


def stop_ui(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """End the UI server started by :func:`start_ui` and every process of its session."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # workers left behind by a server that exited first
        os.killpg(proc.pid, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def training_view_url(base: str, experiment_id: str | None) -> str:
    """The MLflow UI's training (machine learning) view of an experiment, or its home page."""
    if not experiment_id:
        return base + "/"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_command(run_dir: Path, host: str, port: int) -> list[str]:
    """``mlflow server`` on the folder's store: one worker, no job runner, this host only."""
    db = RunDir(run_dir).mlflow_db.resolve()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{db}",
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def ui_environment() -> dict[str, str]:
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_ui(run_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start the MLflow UI on a run folder's store; (the server process, the training view's URL).

    Raises:
        MedsegError: the folder has no ``mlflow.db`` (tracking was off or went to a server).
    """
    run = RunDir(run_dir)
    if not run.mlflow_db.is_file():
        raise MedsegError(
            f"{run_dir}: no mlflow.db; `medseg ui` opens the sqlite store of a run folder (tracking.uri "
            "unset); for a tracking server, open its own address"
        )
    relocate(run.root)
    port = port or free_port(host)
    try:
        out: int | None = sys.stderr.fileno()  # the server's chatter beside medseg's log, not on stdout
    except (AttributeError, OSError, ValueError):
        out = None
    # a session of its own: stop_ui ends the server and the workers it starts, all together
    cmd = ui_command(run.root, host, port)
    proc = subprocess.Popen(cmd, env=ui_environment(), stdout=out, start_new_session=True)
    experiment = run.read_state().get("experiment_id")
    return proc, training_view_url(f"http://{host}:{port}", experiment)
