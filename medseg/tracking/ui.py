"""``medseg ui``: the MLflow UI on the store of a run folder or a project folder, quiet, on this host
only, and gone with ``medseg ui`` however that ends.

The server (``mlflow server``: one worker, no job runner, no access log) runs under
:mod:`medseg.tracking.guard` in a process group of its own, so it ends with ``medseg ui``, SIGKILL
included. Its output goes to a log file, removed when the UI stops and named when the server fails,
with the line that says why.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import MedsegError
from medseg.tracking.store import folder_store, opened

ERROR_LINE = re.compile(r"^(\w[\w.]*(Error|Exception)\b|.*\b(ERROR|CRITICAL)\b)")


@dataclass
class UiServer:
    """A started UI server.

    Attributes:
        proc: the guard process (leader of the server's process group).
        url: the training view of the folder's experiment (or the home page).
        log: the server's output.
        pipe: the write end of the pipe the guard watches; closed when this process ends.
    """

    proc: subprocess.Popen
    url: str
    log: Path
    pipe: int

    @property
    def base(self) -> str:
        return self.url.split("/#")[0].rstrip("/")


def check_port(host: str, port: int | None) -> int:
    """``port`` if it is free on ``host`` (0 or None: a free one).

    Raises:
        MedsegError: out of range or in use, with what to give instead.
    """
    if port is not None and not 0 <= port <= 65535:
        raise MedsegError(f"--port {port}: a port is a number from 1 to 65535 (0: any free one)")
    with socket.socket() as s:
        try:
            s.bind((host, port or 0))
        except OSError as err:
            raise MedsegError(
                f"--port {port}: {host}:{port} is in use ({err.strerror}); give another --port, or "
                "--port 0 for a free one"
            ) from None
        return int(s.getsockname()[1])


def training_view_url(base: str, experiment_id: str | None) -> str:
    """The MLflow UI's training (machine learning) view of an experiment, or its home page."""
    if not experiment_id:
        return base + "/"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def ui_command(uri: str, host: str, port: int) -> list[str]:
    """``mlflow server`` on a store: one worker, no access log, this host only."""
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--host", host, "--port", str(port), "--workers", "1",
        "--uvicorn-opts", "--no-access-log",
    ]  # fmt: skip


def ui_environment() -> dict[str, str]:
    """No job runner; medseg importable by the guard wherever it was imported from."""
    import medseg

    root = str(Path(medseg.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONPATH": path}


def start_ui(folder: Path, host: str = "127.0.0.1", port: int | None = None) -> UiServer:
    """Start the MLflow UI on the store of a run or project folder.

    Raises:
        MedsegError: no store there, a damaged one, or a port out of range or in use.
    """
    store = folder_store(folder)
    port = check_port(host, port)
    with opened(store.uri, store.own):
        pass  # relocated when the folder has moved
    fd, log = tempfile.mkstemp(prefix="medseg-ui-", suffix=".log")
    read, write = os.pipe()
    cmd = [sys.executable, "-m", "medseg.tracking.guard", str(read), "--", *ui_command(store.uri, host, port)]
    try:
        proc = subprocess.Popen(
            cmd,
            env=ui_environment(),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=subprocess.STDOUT,
            pass_fds=(read,),
            start_new_session=True,  # a group of its own: stop_ui ends it whole
        )
    finally:
        os.close(read)
        os.close(fd)
    return UiServer(proc, training_view_url(f"http://{host}:{port}", store.experiment_id), Path(log), write)


def why_failed(server: UiServer) -> str:
    """The line of the server's output that says why it failed (the last error line), or its last."""
    try:
        lines = [ln.strip() for ln in server.log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    errors = [ln for ln in lines if ERROR_LINE.match(ln)]
    line = (errors or lines or ["no output"])[-1]
    return line[:300]


def wait_ready(server: UiServer, timeout: float) -> None:
    """Wait until the server answers ``/health``.

    Raises:
        MedsegError: it exited or did not answer in time, with the reason from its output.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(server.base + "/health", timeout=2):
                return
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            what = "exited" if server.proc.poll() is not None else f"did not answer within {timeout:.0f} s"
            raise MedsegError(
                f"the MLflow UI on {server.base} {what}: {why_failed(server)} (its output: {server.log})"
            )
        time.sleep(0.3)


def stop_ui(server: UiServer, timeout: float = 20.0, keep_log: bool = False) -> None:
    """End the guard, the server and its workers, all together; remove the log unless kept."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, sig)
        try:
            server.proc.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # anything left behind by a guard that ended first
        os.killpg(server.proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.close(server.pipe)
    if not keep_log:
        server.log.unlink(missing_ok=True)


def serve(folder: Path, port: int | None, timeout: float, announce: Callable[[str], object]) -> None:
    """Run the UI until this process is stopped (Ctrl-C, SIGTERM) or the server ends.

    Args:
        folder: a run folder or a project folder.
        port: the port on 127.0.0.1; None or 0: a free one.
        timeout: seconds to wait for the server to answer.
        announce: called with the line that gives the UI's address.

    Raises:
        MedsegError: the server could not start, or stopped by itself (its output kept and named).
    """
    server = start_ui(folder, port=port)
    failed = True
    try:
        wait_ready(server, timeout)
        announce(f"MLflow UI: {server.url}")
        code = server.proc.wait()
        raise MedsegError(
            f"the MLflow UI server stopped by itself (exit code {code}): {why_failed(server)} "
            f"(its output: {server.log})"
        )
    except MedsegError:
        raise
    except BaseException:
        failed = False  # Ctrl-C or SIGTERM: a normal stop
        raise
    finally:
        stop_ui(server, keep_log=failed)
