"""``medseg run PIPELINE --executor slurm|local``: the folds not yet done as jobs, then the report.

Each fold job is ``medseg run PIPELINE [--set ...] --fold K --stage folds`` (training, held-out
prediction and scores of fold K, resumed from its checkpoints when it was started before) and the
final job ``medseg run PIPELINE [--set ...] --stage report`` (post-processing choice, report,
ensemble model, cross-validated metrics), which refuses to run while a fold is not done. Running
the same command again submits only what is left.
"""

from __future__ import annotations

from pathlib import Path

from medseg.cluster.checks import check_free, check_tracking
from medseg.cluster.follow import Outcome, csv_rows, mtime
from medseg.cluster.jobs import Arg, Group, Index, JobState, job_name, medseg_command
from medseg.cluster.slurm import require
from medseg.cluster.submit import Request, earlier, left_running, make_jobs, submit, wait
from medseg.config.load import load_pipeline
from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.pipeline.rerun import fold_count, refuse_changed_rerun, unfinished_folds
from medseg.run_dir import RunDir


class StudyWork:
    """A study's folds and report, as the run folder shows them.

    Args:
        cfg: the study's settings.
        run_dir: its folder.
        since: when the jobs were submitted (a report older than that is an earlier one).
    """

    def __init__(self, cfg: PipelineConfig, run_dir: RunDir, since: float) -> None:
        self.cfg, self.run_dir, self.since = cfg, run_dir, since

    def progress(self, index: int) -> str | None:
        epochs = csv_rows(self.run_dir.fold(index).history)
        return f"training epoch {epochs}/{self.cfg.train.epochs}" if epochs else None

    def done(self, index: int | None, state: JobState) -> bool:
        if index is None:
            fresh = mtime(self.run_dir.summary) >= self.since
            return state.ok is True or (state.ok is None and fresh)
        return self.run_dir.fold_is_done(self.run_dir.read_state(), index, self.cfg.train.epochs)

    def result(self, index: int | None) -> str:
        return f"done: {self.run_dir.report_html}" if index is None else "done"


def study_group(pipeline: Path, overrides: list[str], cfg: PipelineConfig, folds: list[int]) -> Group:
    """The fold jobs ``folds`` and the report job of the study ``pipeline`` with ``overrides``."""
    sets: list[Arg] = [a for o in overrides for a in ("--set", o)]
    study = [*medseg_command("run", str(pipeline.resolve())), *sets]
    return Group(
        name=job_name(cfg.name),
        kind="fold",
        indices=folds,
        argv=[*study, "--fold", Index(), "--stage", "folds"],
        final_name="report",
        final_argv=[*study, "--stage", "report"],
        folder=RunDir(cfg.output_dir).jobs.resolve(),
    )


def report_is_current(run_dir: RunDir, folds: int) -> bool:
    """Whether ``summary.json`` was written after every fold's scores."""
    written = mtime(run_dir.summary)
    return bool(written) and all(written >= mtime(run_dir.fold(k).metrics) for k in range(folds))


def run_study(pipeline: Path, overrides: list[str], request: Request, force: bool = False) -> int:
    """Submit (or find again) a study's jobs and, when asked, follow them to the end.

    Args:
        pipeline: the pipeline file.
        overrides: its ``--set`` values (``split.folds`` among them for ``--fold``).
        request: the executor and how to follow.
        force: start afresh: clear the run folder before submitting.

    Returns:
        0 once the jobs are submitted (not following) or the study is done.

    Raises:
        MedsegError: settings that jobs cannot run with, a folder another run holds, a refused
            submission, or jobs that failed (each named with its log).
    """
    cfg = load_pipeline(pipeline, overrides)
    run_dir = RunDir(cfg.output_dir)
    if request.executor == "slurm":
        require()
        check_tracking(cfg.tracking, run_dir)
        found = earlier(run_dir.jobs, lambda k: study_group(pipeline, overrides, cfg, k), cfg.executor)
        if found is not None:
            jobs, since = found
            request.echo(f"jobs of an earlier submission are still queued or running: {jobs.describe()}")
            if not request.wait:
                left_running(jobs, request)
                return 0
            return _end(
                wait(jobs, StudyWork(cfg, run_dir, since), request, cfg.executor.poll_seconds), run_dir
            )
    return _submit(pipeline, overrides, cfg, request, force)


def _submit(pipeline: Path, overrides: list[str], cfg: PipelineConfig, request: Request, force: bool) -> int:
    """Check the folder, submit the folds left and the report job, follow them if asked."""
    run_dir = RunDir(cfg.output_dir)
    check_free(run_dir)
    if force:
        with run_dir.running(None):
            run_dir.clear()
    folds = unfinished_folds(cfg, run_dir)
    as_jobs = cfg.model_copy(update={"split": cfg.split.model_copy(update={"folds": folds or None})})
    refuse_changed_rerun(run_dir, as_jobs)  # as the fold jobs would, before any is submitted
    if not folds and report_is_current(run_dir, fold_count(cfg, run_dir)):
        request.echo(f"nothing to do: every fold is done and the report written: {run_dir.report_html}")
        return 0
    jobs = make_jobs(study_group(pipeline, overrides, cfg, folds), cfg.executor, request)
    since = submit(jobs, request)
    request.echo(f"run folder: {run_dir.root}")
    if not request.follows:
        left_running(jobs, request)
        return 0
    return _end(wait(jobs, StudyWork(cfg, run_dir, since), request, cfg.executor.poll_seconds), run_dir)


def _end(outcome: Outcome, run_dir: RunDir) -> int:
    if outcome.failed:
        raise MedsegError(
            f"the study in {run_dir.root} did not finish: {len(outcome.failed)} job(s) failed (their "
            "logs are named above); run the same command again to finish only what is left"
        )
    return 0
