"""Jobs on Slurm through its own commands: ``sbatch`` submits, ``squeue`` follows, ``scancel`` cancels.

A group is one job array (task ``i`` runs the group's command with index ``i``) and a final job
that depends on the whole array (``afterany``: it runs once every task has ended, however it
ended, and says itself whether the study can end). Each job's log is a file in the group's folder
(``fold_3-1234.log``, ``report-1235.log``), which must be on a file system the nodes share.
Following uses ``squeue --states=all``, which also lists jobs that ended in the last minutes
(``MinJobAge``), and never ``sacct``, so clusters without job accounting work; a job gone from the
queue is judged by the files it wrote.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from medseg.cluster.jobs import Group, JobState, shell_line
from medseg.config.models import ExecutorConfig
from medseg.errors import MedsegError

QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD"}
RUNNING = {"RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "STOPPED"}
TIMEOUT_S = 60


def _command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; a missing program or one that hangs becomes a clear error."""
    if shutil.which(argv[0]) is None:
        raise MedsegError(
            f"--executor slurm: `{argv[0]}` is not on PATH; run medseg on a Slurm login node, or use "
            "--executor local to run the jobs on this machine"
        )
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise MedsegError(f"`{argv[0]}` did not answer in {TIMEOUT_S} s; is slurmctld up?") from None


def require() -> None:
    """Fail at once, before anything is written, where Slurm's commands are not on PATH."""
    for program in ("sbatch", "squeue", "scancel"):
        if shutil.which(program) is None:
            _command([program])  # raises, saying what to do


def resources(executor: ExecutorConfig, gpus: bool = True) -> list[str]:
    """The ``sbatch`` options that ask for the resources of one job.

    Example:
        >>> resources(ExecutorConfig(partition="gpu", gpus=1, cpus=8, memory="32G", time_limit="4:00:00"))
        ['--cpus-per-task=8', '--partition=gpu', '--gres=gpu:1', '--mem=32G', '--time=4:00:00']
    """
    options = [f"--cpus-per-task={executor.cpus}"]
    if executor.partition:
        options.append(f"--partition={executor.partition}")
    if gpus and executor.gpus:
        options.append(f"--gres=gpu:{executor.gpus}")
    if executor.memory:
        options.append(f"--mem={executor.memory}")
    if executor.time_limit:
        options.append(f"--time={executor.time_limit}")
    return options + list(executor.sbatch_options)


def write_script(path: Path, argv: list[Any], env: dict[str, str], sbatch: list[str]) -> Path:
    """A job script that runs ``argv`` with ``env`` and one thread per core given to it."""
    lines = [
        "#!/bin/bash",
        "# written by medseg; submitted with:",
        f"#   sbatch {shlex.join(sbatch)} {shlex.quote(str(path))}",
        *(f"export {k}={shlex.quote(v)}" for k, v in env.items()),
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}" MKL_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        f"exec {shell_line(argv)}",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o700)  # the command may hold settings given with --set
    return path


def sbatch(options: list[str], script: Path, what: str) -> str:
    """Submit ``script``; the job id.

    Raises:
        MedsegError: ``sbatch`` refused it, with Slurm's reason.
    """
    done = _command(["sbatch", "--parsable", *options, str(script)])
    job = done.stdout.strip().split(";")[0]
    if done.returncode != 0 or not job.isdigit():
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise MedsegError(f"sbatch refused the {what}: {reason} (check the executor section: partition, ...)")
    return job


def cancel(jobs: list[str]) -> None:
    """``scancel`` the jobs (array ids cancel every task)."""
    if jobs:
        _command(["scancel", *jobs])


def queue(jobs: list[str]) -> dict[str, tuple[str, str]] | None:
    """``{job id: (state, reason)}`` of the jobs Slurm still knows (array tasks as ``1234_5``);
    None when ``squeue`` failed for another reason than jobs it no longer knows."""
    done = _command(
        ["squeue", "--noheader", "--states=all", "--array", "--format=%i|%T|%r", "--jobs", ",".join(jobs)]
    )
    if done.returncode != 0:
        return {} if "Invalid job id" in done.stderr else None
    rows = [line.split("|") for line in done.stdout.splitlines() if line.count("|") == 2]
    return {job: (state, reason) for job, state, reason in rows}


class SlurmJobs:
    """A group submitted to Slurm, or found again from its job ids.

    Args:
        group: what the jobs run.
        executor: the resources each job asks for.
        array: the array's job id, once submitted.
        final: the final job's id.
    """

    def __init__(self, group: Group, executor: ExecutorConfig, array: str = "", final: str = "") -> None:
        self.group, self.executor = group, executor
        self.array, self.final = array, final
        self.last: dict[str, tuple[str, str]] = {}

    def submit(self) -> None:
        """Submit the array (when there are tasks), then the final job after it; the array is
        cancelled if the final job is refused."""
        g = self.group
        common = [f"--job-name={g.name}", f"--chdir={g.cwd}"]
        if g.indices:
            limit = f"%{self.executor.max_jobs}" if self.executor.max_jobs else ""
            array = [
                *common,
                f"--array={','.join(map(str, g.indices))}{limit}",
                f"--output={g.folder / f'{g.kind}_%a-%A.log'}",
                *resources(self.executor),
            ]
            self.array = sbatch(
                array, write_script(g.folder / f"{g.kind}s.sh", g.argv, g.env, array), f"{g.kind} jobs"
            )
        after = [f"--dependency=afterany:{self.array}", "--kill-on-invalid-dep=yes"] if self.array else []
        final = [
            *common,
            *after,
            f"--output={g.folder / f'{g.final_name}-%j.log'}",
            *resources(self.executor, gpus=False),
        ]
        script = write_script(g.folder / f"{g.final_name}.sh", g.final_argv, g.env, final)
        try:
            self.final = sbatch(final, script, f"{g.final_name} job")
        except MedsegError:
            cancel(self.ids)
            raise

    @property
    def ids(self) -> list[str]:
        return [j for j in (self.array, self.final) if j]

    def describe(self) -> str:
        g = self.group
        final = f"job {self.final} ({g.final_name}"
        if not self.array:
            return final + ")"
        tasks = ", ".join(map(str, g.indices))
        return f"job array {self.array} ({g.kind}s {tasks}) and {final}, after the array)"

    def log(self, index: int | None) -> Path:
        g = self.group
        if index is None:
            return g.folder / f"{g.final_name}-{self.final}.log"
        return g.folder / f"{g.kind}_{index}-{self.array}.log"

    def poll(self) -> dict[int | None, JobState]:
        """Each task's and the final job's state; a job Slurm no longer knows has ended (ok unknown)."""
        found = queue(self.ids)
        if found is None:  # slurmctld busy: keep what was last seen
            found = self.last
        self.last = found
        states: dict[int | None, JobState] = {}
        for index in [*self.group.indices, None]:
            job = self.final if index is None else f"{self.array}_{index}"
            states[index] = _state(job, found.get(job), self.log(index))
        return states

    def cancel(self) -> None:
        cancel(self.ids)

    def running(self) -> bool:
        """Whether any job of the group is still queued or running."""
        return any(s.phase != "ended" for s in self.poll().values())


def _state(job: str, row: tuple[str, str] | None, log: Path) -> JobState:
    if row is None:
        return JobState("ended", job, log, "gone from the queue")
    state, reason = row
    if state in QUEUED:
        shown = f"{state} ({reason})" if reason not in ("None", "") else state
        return JobState("queued", job, log, shown)
    if state in RUNNING:
        return JobState("running", job, log, state)
    return JobState("ended", job, log, state, ok=state == "COMPLETED")
