"""Submit a group of jobs, or find the one submitted earlier still in the queue, and follow it.

A Slurm submission is recorded in ``jobs/submitted.json`` of its folder (job ids, tasks, time), so
the same command run again while those jobs are queued or running follows them (``--wait``) or
says how, instead of submitting them twice. Ctrl-C while following asks whether to cancel the
jobs (``--cancel-on-interrupt`` cancels without asking); local processes always stop.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medseg.cluster.follow import Jobs, Outcome, Work, follow
from medseg.cluster.jobs import Group
from medseg.cluster.local import LocalJobs
from medseg.cluster.slurm import SlurmJobs
from medseg.config.models import ExecutorConfig
from medseg.io.atomic import write_json

RECORD = "submitted.json"
LOCAL_POLL_S = 1.0


@dataclass(frozen=True)
class Request:
    """How the user asked for the jobs to run.

    Attributes:
        executor: ``slurm`` or ``local``.
        wait: follow the jobs until they end (local jobs are always followed).
        devices: local: one process per device number.
        cancel_on_interrupt: Ctrl-C cancels the jobs without asking.
        ask: asks the user a yes/no question (Ctrl-C while waiting).
        echo: prints one line.
    """

    executor: Literal["slurm", "local"]
    wait: bool = False
    devices: list[str] | None = None
    cancel_on_interrupt: bool = False
    ask: Callable[[str], bool] = lambda question: False
    echo: Callable[[str], None] = print

    @property
    def follows(self) -> bool:
        return self.wait or self.executor == "local"


def make_jobs(group: Group, settings: ExecutorConfig, request: Request) -> Jobs:
    """The group on Slurm, or as local processes."""
    if request.executor == "slurm":
        return SlurmJobs(group, settings)
    return LocalJobs(group, request.devices, settings.max_jobs or 1, len(os.sched_getaffinity(0)))


def earlier(
    folder: Path, group: Callable[[list[int]], Group], settings: ExecutorConfig
) -> tuple[SlurmJobs, float] | None:
    """The Slurm jobs recorded in ``folder`` when some are still queued or running, with the time
    they were submitted."""
    try:
        record = json.loads((folder / RECORD).read_text())
        jobs = SlurmJobs(group(list(record["indices"])), settings, record["array"], record["final"])
        since = float(record["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (jobs, since) if jobs.running() else None


def submit(jobs: Jobs, request: Request) -> float:
    """Submit the group, record it (Slurm) and say so; the time of submission."""
    since = time.time()
    jobs.submit()
    if isinstance(jobs, SlurmJobs):
        record = {"executor": "slurm", "array": jobs.array, "final": jobs.final, "time": since}
        write_json(jobs.group.folder / RECORD, {**record, "indices": jobs.group.indices})
    request.echo(f"submitted: {jobs.describe()}")
    return since


def wait(jobs: Jobs, work: Work, request: Request, poll_s: float) -> Outcome:
    """Follow the jobs to their end; on Ctrl-C, cancel them if asked to, then raise KeyboardInterrupt.

    Raises:
        KeyboardInterrupt: following was interrupted (after the jobs were cancelled or left running).
    """
    local = isinstance(jobs, LocalJobs)
    outcome = follow(jobs, work, LOCAL_POLL_S if local else poll_s, request.echo)
    if not outcome.interrupted:
        return outcome
    ids = " ".join(getattr(jobs, "ids", []))
    if local or request.cancel_on_interrupt or request.ask(f"cancel the jobs ({ids})?"):
        jobs.cancel()
        request.echo(f"cancelled: {ids}; what the jobs finished is kept, the same command goes on from there")
    else:
        request.echo(
            f"the jobs go on: follow them with the same command and --wait; cancel them: scancel {ids}"
        )
    raise KeyboardInterrupt


def left_running(jobs: Jobs, request: Request) -> None:
    """Say how to follow or cancel jobs that this command does not wait for."""
    ids = " ".join(getattr(jobs, "ids", []))
    request.echo(f"follow them: the same command with --wait; cancel them: scancel {ids}")
