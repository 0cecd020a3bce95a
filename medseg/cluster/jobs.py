"""What a group of jobs runs: an array of tasks that differ only by their index, then one final job.

A task's command is the ``medseg`` command line of a fold or a part, run by the same Python as the
command that submitted it, in the same folder, with the same ``PYTHONPATH``: the jobs run the code
the user runs. The index appears in the command as :class:`Index` (``--fold 3``, ``--part 2/4``),
which Slurm fills from ``$SLURM_ARRAY_TASK_ID`` and the local executor fills itself.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ARRAY_TASK = '"$SLURM_ARRAY_TASK_ID"'


@dataclass(frozen=True)
class Index:
    """An argument made of the task's index between two fixed strings (``{prefix}{index}{suffix}``).

    Example:
        >>> Index(suffix="/4").render(2), Index(suffix="/4").shell()
        ('2/4', '"$SLURM_ARRAY_TASK_ID"/4')
    """

    prefix: str = ""
    suffix: str = ""

    def render(self, index: int) -> str:
        return f"{self.prefix}{index}{self.suffix}"

    def shell(self) -> str:
        """The argument in a shell script, the index taken from Slurm's array task id."""
        quote = lambda s: shlex.quote(s) if s else ""  # noqa: E731
        return f"{quote(self.prefix)}{ARRAY_TASK}{quote(self.suffix)}"


Arg = str | Index


def medseg_command(*args: Arg) -> list[Arg]:
    """``python -m medseg ARGS`` with this process's Python.

    Example:
        >>> medseg_command("run", "p.yaml")[1:]
        ['-m', 'medseg', 'run', 'p.yaml']
    """
    return [sys.executable, "-m", "medseg", *args]


def render(argv: list[Arg], index: int | None) -> list[str]:
    """The command of task ``index`` (None: a command without an index)."""
    if index is None and any(isinstance(a, Index) for a in argv):
        raise ValueError("this command needs a task index")
    return [a.render(index) if isinstance(a, Index) else a for a in argv]  # type: ignore[arg-type]


def shell_line(argv: list[Arg]) -> str:
    """The command as one shell line, an :class:`Index` taken from ``$SLURM_ARRAY_TASK_ID``.

    Example:
        >>> shell_line(["medseg", "run", "my study.yaml", "--fold", Index()])
        'medseg run \\'my study.yaml\\' --fold "$SLURM_ARRAY_TASK_ID"'
    """
    return " ".join(a.shell() if isinstance(a, Index) else shlex.quote(a) for a in argv)


@dataclass(frozen=True)
class Group:
    """One submission: tasks ``indices`` of ``argv`` (at most ``max_jobs`` at once), then ``final``.

    Attributes:
        name: the job name (``medseg-<study>``), letters, digits, ``_``, ``.`` and ``-``.
        kind: ``fold`` or ``part``: what one task is, for messages and log names.
        indices: the task indices (fold numbers, or part numbers from 1).
        argv: the command of a task.
        final_name: what the final job does (``report``, ``merge``).
        final_argv: its command.
        folder: where job scripts and logs go (``jobs/`` of the run or output folder).
        cwd: the folder the commands run in.
        env: variables the jobs need beyond the submitting shell's (``PYTHONPATH``).
    """

    name: str
    kind: Literal["fold", "part"]
    indices: list[int]
    argv: list[Arg]
    final_name: str
    final_argv: list[Arg]
    folder: Path
    cwd: Path = field(default_factory=Path.cwd)
    env: dict[str, str] = field(default_factory=lambda: job_environment())

    def label(self, index: int | None) -> str:
        """``fold 2``, ``part 2/4``, or the final job's name (index None)."""
        if index is None:
            return self.final_name
        return f"part {index}/{len(self.indices)}" if self.kind == "part" else f"fold {index}"


def job_environment() -> dict[str, str]:
    """What a job needs to import the code this process runs: ``PYTHONPATH`` as set here."""
    path = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": path} if path else {}


def job_name(name: str) -> str:
    """A Slurm job name from a study's name.

    Example:
        >>> job_name("ISIC 2018/β")
        'medseg-ISIC_2018__'
    """
    return "medseg-" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:40]


@dataclass(frozen=True)
class JobState:
    """Where one job stands.

    Attributes:
        phase: ``queued``, ``running`` or ``ended``.
        job: the job's id (``1234_0``, ``1235``, ``local 4711``).
        log: its log file.
        detail: the scheduler's word for it (``PENDING (Resources)``, ``FAILED``, ``exit 1``).
        ok: for an ended job, whether it ended well (None: not known, gone from the queue).
    """

    phase: Literal["queued", "running", "ended"]
    job: str
    log: Path
    detail: str = ""
    ok: bool | None = None
