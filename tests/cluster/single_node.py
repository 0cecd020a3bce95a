"""A real single-node Slurm, started as root without systemd (the tests' fixture and
``benchmarks/bench_slurm.py`` use it).

``munged`` with a key and socket of its own, ``slurmctld -D`` and ``slurmd -D`` on free ports, all
in a temporary folder: ``proctrack/linuxproc``, ``task/none``, no accounting (so no ``sacct``:
medseg follows jobs with ``squeue`` and files), the node's real CPUs and memory as ``slurmd -C``
reports them. Each daemon is stopped by its own process id. Jobs see ``SLURM_CONF`` and the
``PYTHONPATH`` of this checkout, so they run this code. It needs the Debian packages
``slurmctld slurmd slurm-client munge`` and root (:func:`unavailable` says why not).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
READY_S = 60


@dataclass
class Slurm:
    """A running single-node cluster.

    Attributes:
        folder: its configuration, state, logs and munge socket.
        env: the environment a command needs to use it (``SLURM_CONF``, this checkout's path).
    """

    folder: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def jobs(self) -> list[str]:
        """Every job Slurm holds that has not ended, as ``id|state``."""
        out = self.run("squeue", "--noheader", "--array", "--format=%i|%T").stdout
        return [line for line in out.splitlines() if line.strip()]

    def cancel_all(self, timeout: float = 60) -> None:
        """Cancel every job of this private cluster and wait until none is left."""
        self.run("scancel", "--user", "root", check=False)
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.5)

    def logs(self) -> str:
        logs = sorted(self.folder.glob("*.log"))
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in logs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(folder: Path, node: str) -> str:
    hardware = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    node_line = next(line for line in hardware.splitlines() if line.startswith("NodeName="))
    node_line = node_line.replace(f"NodeName={node_line.split()[0].split('=')[1]}", f"NodeName={node}")
    fields = dict(item.split("=", 1) for item in node_line.split())
    per_cpu = int(fields["RealMemory"]) // int(fields["CPUs"])  # a job without --mem takes its share
    return "\n".join(
        [
            "ClusterName=medsegtest",
            f"SlurmctldHost={node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={folder / 'munge.sock'}",
            f"StateSaveLocation={folder / 'state'}",
            f"SlurmdSpoolDir={folder / 'spool'}",
            f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
            f"SlurmdPidFile={folder / 'slurmd.pid'}",
            f"SlurmctldLogFile={folder / 'slurmctld.log'}",
            f"SlurmdLogFile={folder / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=bf_interval=1",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU_Memory",
            f"DefMemPerCPU={per_cpu}",
            "ReturnToService=2",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "PlugStackConfig=/dev/null",
            "KillWait=5",
            f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start_munge(folder: Path) -> subprocess.Popen[bytes]:
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    argv = [
        "munged", "--foreground", "--force", f"--key-file={key}", f"--socket={folder / 'munge.sock'}",
        f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
        f"--seed-file={folder / 'munged.seed'}",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (folder / "munge.sock").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def unavailable() -> str | None:
    """Why a single-node Slurm cannot be started here, or None."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return (
            f"Slurm is not installed ({', '.join(missing)} missing); Debian: apt-get install slurmctld "
            "slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "the single-node Slurm's slurmd runs jobs as root: run as root"
    return None


@contextmanager
def single_node_slurm() -> Iterator[Slurm]:
    """A single-node Slurm, ready to take jobs (about 10 s to start), stopped when the block ends.

    Raises:
        RuntimeError: it did not become ready, with the daemons' logs.
    """
    folder = Path(tempfile.mkdtemp(prefix="medseg-slurm-"))  # short: the munge socket path is bounded
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    node = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(_config(folder, node))
    env = {**os.environ, "SLURM_CONF": str(conf), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cluster = Slurm(folder, env)
    daemons = [_start_munge(folder)]
    try:
        for argv in (["slurmctld", "-D", "-f", str(conf)], ["slurmd", "-D", "-N", node, "-f", str(conf)]):
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            daemons.append(subprocess.Popen(argv, env=env, **quiet))  # type: ignore[call-overload]
        deadline = time.monotonic() + READY_S
        while cluster.run("sinfo", "--noheader", "--format=%T", check=False).stdout.strip() != "idle":
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the single-node Slurm did not become ready in {READY_S} s:\n{cluster.logs()}"
                )
            time.sleep(0.3)
        yield cluster
    finally:
        if len(daemons) == 3 and daemons[1].poll() is None:
            cluster.cancel_all()
        for proc in reversed(daemons):
            _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)
