"""The same jobs as processes on this machine: ``--executor local --devices 0,1,2,3``.

Each task runs in a process of its own with one device (``CUDA_VISIBLE_DEVICES``), as many at once
as there are devices (without ``--devices``: ``executor.max_jobs``, default one, sharing the
machine's devices and cores), and the final job once every task has ended. The processes share
this command's terminal and die with it, so Ctrl-C stops them; a folder's locks keep a second
command from running the same folds meanwhile.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from medseg.cluster.jobs import Group, JobState, render

STOP_WAIT_S = 30


@dataclass
class _Process:
    index: int | None
    log: Path
    device: str | None
    proc: subprocess.Popen[bytes]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when this process dies (even by SIGKILL)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalJobs:
    """A group run as processes here, at most one per device (or ``slots`` at once).

    Args:
        group: what the processes run.
        devices: device numbers given one per process, or None.
        slots: processes at once when no devices are given.
        cores: the cores this machine gives the processes, shared out as their threads.
    """

    def __init__(self, group: Group, devices: list[str] | None, slots: int, cores: int) -> None:
        self.group = group
        self.devices = list(devices or [])
        self.slots = len(self.devices) or slots
        self.threads = max(1, cores // min(self.slots, max(1, len(group.indices))))
        self.waiting: list[int | None] = [*group.indices, None]
        self.running_: list[_Process] = []
        self.ended: dict[int | None, JobState] = {}
        self.stamp = f"local{os.getpid()}"

    def submit(self) -> None:
        self.group.folder.mkdir(parents=True, exist_ok=True)
        self.poll()

    @property
    def ids(self) -> list[str]:
        return [str(p.proc.pid) for p in self.running_]

    def describe(self) -> str:
        g = self.group
        where = f"one per device of {','.join(self.devices)}" if self.devices else f"{self.slots} at a time"
        return f"{len(g.indices)} {g.kind} process(es) on this machine ({where}), then the {g.final_name}"

    def log(self, index: int | None) -> Path:
        g = self.group
        name = g.final_name if index is None else f"{g.kind}_{index}"
        return g.folder / f"{name}-{self.stamp}.log"

    def poll(self) -> dict[int | None, JobState]:
        """Reap ended processes, start what may start, and say where each job stands."""
        for p in list(self.running_):
            code = p.proc.poll()
            if code is not None:
                self.running_.remove(p)
                detail = "exit 0" if code == 0 else f"exit {code}" if code > 0 else f"signal {-code}"
                self.ended[p.index] = JobState("ended", f"local {p.proc.pid}", p.log, detail, ok=code == 0)
        self._start_free()
        states = dict(self.ended)
        for p in self.running_:
            states[p.index] = JobState("running", f"local {p.proc.pid}", p.log, p.device or "")
        for index in self.waiting:
            states[index] = JobState("queued", "local", self.log(index), "waiting for a device")
        return states

    def _start_free(self) -> None:
        while self.waiting and len(self.running_) < self.slots:
            index = self.waiting[0]
            if index is None and any(p.index is not None for p in self.running_):
                return  # the final job waits for every task
            self.waiting.pop(0)
            used = {p.device for p in self.running_}
            device = next((d for d in self.devices if d not in used), None)
            self.running_.append(self._start(index, device))

    def _start(self, index: int | None, device: str | None) -> _Process:
        g = self.group
        env = {
            **os.environ,
            **g.env,
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
        }
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        argv = render(g.final_argv if index is None else g.argv, index)
        log = self.log(index)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, cwd=g.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        return _Process(index, log, device, proc)

    def cancel(self) -> None:
        """Stop the processes (SIGINT: each keeps what it has finished) and start no more."""
        for index in self.waiting:
            self.ended[index] = JobState("ended", "local", self.log(index), "cancelled", ok=False)
        self.waiting = []
        for p in self.running_:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGINT)
        for p in self.running_:
            try:
                p.proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait()
        self.poll()
