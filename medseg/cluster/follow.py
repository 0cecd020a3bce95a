"""``--wait``: follow a group's jobs with one line per job each time its state changes.

    fold 0: queued (job 1234_0)
    fold 0: training epoch 3/30
    fold 0: done
    fold 1: failed (CANCELLED); log: runs/demo/jobs/fold_1-1234.log
    report: failed (FAILED); log: runs/demo/jobs/report-1235.log

Whether a job did its work is read from the files it writes (a fold is done when the run folder
says so), not from the scheduler alone: a job that ended without doing its work has failed,
whatever its exit code, and one that is gone from the queue is judged by its files.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from medseg.cluster.jobs import Group, JobState


class Jobs(Protocol):
    """Where a group runs: :class:`~medseg.cluster.slurm.SlurmJobs` or
    :class:`~medseg.cluster.local.LocalJobs`."""

    group: Group

    def submit(self) -> None: ...

    def poll(self) -> dict[int | None, JobState]: ...

    def cancel(self) -> None: ...

    def describe(self) -> str: ...


class Work(Protocol):
    """What the jobs of a group do, read from their files: a study's folds or a batch's parts."""

    def progress(self, index: int) -> str | None:
        """What a running task is doing (``training epoch 3/30``), when its files say."""
        ...

    def done(self, index: int | None, state: JobState) -> bool:
        """Whether an ended job (index None: the final one) did its work."""
        ...

    def result(self, index: int | None) -> str:
        """The line's text for a job that did its work (``done``, ``done: report runs/x/report.html``)."""
        ...


@dataclass
class Outcome:
    """How a group ended.

    Attributes:
        failed: one line per job that did not do its work, naming its log.
        interrupted: following was stopped with Ctrl-C before the jobs ended.
    """

    failed: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def line(group: Group, work: Work, index: int | None, state: JobState) -> str:
    """The line that says where one job stands.

    Example:
        >>> from pathlib import Path
        >>> g = Group("medseg-x", "fold", [0], ["true"], "report", ["true"], Path("jobs"))
        >>> line(g, None, 0, JobState("queued", "12_0", Path("jobs/fold_0-12.log"), "PENDING (Priority)"))
        'fold 0: queued (job 12_0, PENDING (Priority))'
        >>> line(g, None, None, JobState("queued", "13", Path("r.log"), "PENDING (Dependency)"))
        'report: waiting for the folds (job 13)'
    """
    label = group.label(index)
    if state.phase == "queued":
        if index is None and "Dependency" in state.detail:
            return f"{label}: waiting for the {group.kind}s (job {state.job})"
        extra = f", {state.detail}" if state.detail not in ("", "PENDING") else ""
        return f"{label}: queued (job {state.job}{extra})"
    if state.phase == "running":
        doing = work.progress(index) if index is not None else None
        return f"{label}: {doing}" if doing else f"{label}: running (job {state.job})"
    if work.done(index, state):
        return f"{label}: {work.result(index)}"
    return f"{label}: failed ({state.detail}); log: {state.log}"


def follow(jobs: Jobs, work: Work, poll_s: float, echo: Callable[[str], None]) -> Outcome:
    """Print a line for each job whose state changes until every job has ended.

    Args:
        jobs: the submitted group.
        work: reads what the jobs have done from their files.
        poll_s: seconds between looks at the queue.
        echo: prints one line.

    Returns:
        The jobs that failed, or that following was interrupted (Ctrl-C).
    """
    shown: dict[int | None, str] = {}
    order = [*jobs.group.indices, None]
    try:
        while True:
            states = jobs.poll()
            for index in order:
                text = line(jobs.group, work, index, states[index])
                if shown.get(index) != text:
                    echo(text)
                    shown[index] = text
            if all(s.phase == "ended" for s in states.values()):
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        return Outcome(interrupted=True)
    failed = [shown[i] for i in order if not work.done(i, states[i])]
    return Outcome(failed=failed)


def csv_rows(path: Path) -> int:
    """Data rows of a CSV file that is written whole each time (0 when absent)."""
    try:
        with open(path, newline="") as fh:
            return max(0, sum(1 for _ in csv.reader(fh)) - 1)
    except (OSError, csv.Error):
        return 0


def mtime(path: Path) -> float:
    """When ``path`` was last written (0 when absent)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
