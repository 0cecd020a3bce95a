"""``medseg predict ... --executor slurm|local --parts N``: N part jobs over one output folder, then
the merge.

Part job I is ``medseg predict ... --part I/N`` and the final job ``medseg predict --output OUT
--merge``, which names the parts that have not finished. Running the same command again submits
the parts that have no summary yet or had inputs fail (a part run again only does what it has not
done).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.cluster.follow import Jobs, Outcome, csv_rows, mtime
from medseg.cluster.jobs import Arg, Group, Index, JobState, job_name, medseg_command
from medseg.cluster.slurm import require
from medseg.cluster.submit import Request, earlier, left_running, make_jobs, submit, wait
from medseg.config.models import ExecutorConfig
from medseg.errors import MedsegError
from medseg.infer import parts

EXIT_PARTIAL = 2


class BatchWork:
    """A batch's parts and merge, as the output folder shows them.

    Args:
        out_dir: the output folder.
        n: the number of parts.
        since: when the jobs were submitted (a summary older than that is an earlier one).
    """

    def __init__(self, out_dir: Path, n: int, since: float) -> None:
        self.out_dir, self.n, self.since = out_dir, n, since

    def _summary(self, index: int | None) -> Path:
        return self.out_dir / (parts.SUMMARY if index is None else parts.summary_name((index, self.n)))

    def progress(self, index: int) -> str | None:
        rows = csv_rows(self.out_dir / parts.manifest_name((index, self.n)))
        return f"{rows} input(s) recorded" if rows else None

    def done(self, index: int | None, state: JobState) -> bool:
        fresh = mtime(self._summary(index)) >= self.since
        if index is None:
            return state.ok is True or (state.ok is None and fresh)
        return fresh  # a part whose inputs partly failed exits with 2 but has done its work

    def result(self, index: int | None) -> str:
        summary = _read(self._summary(index))
        counts = ", ".join(f"{summary.get(k, 0)} {k.replace('_', ' ')}" for k in parts.COUNTS[:4])
        where = f"; manifest: {self.out_dir / 'manifest.csv'}" if index is None else ""
        return f"done: {counts}{where}"


def _read(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def batch_group(out_dir: Path, n: int, todo: list[int], forward: list[str], name: str) -> Group:
    """Part jobs ``todo`` of ``n`` with the predict options ``forward``, and the merge job."""
    out: list[Arg] = ["--output", str(out_dir.resolve())]
    return Group(
        name=job_name(name),
        kind="part",
        indices=todo,
        argv=[*medseg_command("predict", *forward, *out), "--part", Index(suffix=f"/{n}")],
        final_name="merge",
        final_argv=medseg_command("predict", *out, "--merge"),
        folder=(out_dir / "jobs").resolve(),
    )


def unfinished_parts(out_dir: Path, n: int) -> list[int]:
    """Parts without a summary, or whose summary counts failed inputs (a rerun tries them again)."""
    return [i for i in range(1, n + 1) if _read(out_dir / parts.summary_name((i, n))).get("failed", 1) != 0]


def predict_parts(
    out_dir: Path, n: int, forward: list[str], settings: ExecutorConfig, name: str, request: Request
) -> int:
    """Submit (or find again) a batch's part jobs and the merge; when asked, follow them.

    Args:
        out_dir: the output folder the parts share.
        n: how many parts.
        forward: the predict options each part job takes (``--model``, ``--input``, ``--set`` ...).
        settings: the executor section of the model's settings.
        name: the study's name, for the job name.
        request: the executor and how to follow.

    Returns:
        0 when the jobs are submitted (not following) or every input is done; 2 when some inputs
        failed (named in the manifest).

    Raises:
        MedsegError: another part count unfinished in the folder, a refused submission, or jobs
            that failed (each named with its log).
    """
    if n < 2:
        raise MedsegError(f"--parts {n}: give 2 or more; one job is `medseg predict` without --executor")
    folder = (out_dir / "jobs").resolve()
    found = None
    if request.executor == "slurm":
        require()
        found = earlier(folder, lambda k: batch_group(out_dir, n, k, forward, name), settings)
    jobs: Jobs
    if found is not None:
        jobs, since = found
        request.echo(f"jobs of an earlier submission are still queued or running: {jobs.describe()}")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        parts.claim(out_dir, (1, n))  # refuses a batch of another count that has not finished
        todo = unfinished_parts(out_dir, n)
        if not todo and mtime(out_dir / parts.SUMMARY) >= max(
            mtime(out_dir / parts.summary_name((i, n))) for i in range(1, n + 1)
        ):
            request.echo(f"nothing to do: every part is done and merged: {out_dir / 'manifest.csv'}")
            return 0
        jobs = make_jobs(batch_group(out_dir, n, todo, forward, name), settings, request)
        since = submit(jobs, request)
    request.echo(f"output folder: {out_dir}")
    if not request.follows:
        left_running(jobs, request)
        return 0
    return _end(wait(jobs, BatchWork(out_dir, n, since), request, settings.poll_seconds), out_dir)


def _end(outcome: Outcome, out_dir: Path) -> int:
    if outcome.failed:
        raise MedsegError(
            f"the batch into {out_dir} did not finish: {len(outcome.failed)} job(s) failed (their logs "
            "are named above); run the same command again to do only what is left"
        )
    return EXIT_PARTIAL if _read(out_dir / parts.SUMMARY).get("failed") else 0
