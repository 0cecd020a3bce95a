"""``medseg run``: ingest -> splits -> statistics -> for each fold: train -> infer -> evaluate -> report.

Every stage writes files into the run folder (layout in :mod:`medseg.run_dir`) and MLflow logs
the same files; ``config.yaml`` is the resolved plan, written once, after the intensity statistics
are known. A killed run resumes from ``run_state.json`` and the fold checkpoints.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from medseg.config.load import dump_config
from medseg.config.models import PipelineConfig
from medseg.data.datalist import shareable
from medseg.data.digest import cases_digest
from medseg.data.splits import load_or_make_splits
from medseg.errors import ConfigError, MedsegError
from medseg.evaluate.casewise import CLASS_MEAN, class_summaries, read_metrics_csv
from medseg.evaluate.postprocessing import adopt, choose
from medseg.evaluate.uncertainty import review_rule
from medseg.io.atomic import write_json, write_text
from medseg.io.case import Case
from medseg.pipeline.fold import fit_fold, run_fold
from medseg.pipeline.rerun import refuse_changed_rerun, unfinished_folds
from medseg.pipeline.stages import (
    Before,
    before_run,
    ingest,
    resolve_channel_files,
    resolve_statistics,
    undo_set_up,
)
from medseg.progress import StudyBar
from medseg.provenance import provenance
from medseg.report.overlays import write_overlays
from medseg.report.pages import write_report
from medseg.report.preview import preview_grid
from medseg.run_dir import FoldDir, RunDir
from medseg.runtime import seed_everything
from medseg.tracking.mlflow_models import log_ensemble
from medseg.tracking.names import cv_metrics, cv_raw_metrics, fold_metrics
from medseg.tracking.tracker import Tracker
from medseg.train.distributed import DistInfo, barrier, init_distributed

log = logging.getLogger(__name__)

Stage = Literal["all", "folds", "report"]


def run(cfg: PipelineConfig, force: bool = False, stage: Stage = "all") -> Path:
    """Run the whole study described by ``cfg``, or the folds in ``split.folds``.

    One run holds its folder: a second run there is refused at once, while ``--fold K`` jobs share
    the folder, each holding its folds (:meth:`medseg.run_dir.RunDir.running`).

    Args:
        cfg: the resolved pipeline configuration (:func:`medseg.config.load.load_pipeline`).
        force: start afresh: remove the fold models and results an earlier run left in the folder.
        stage: ``all``; ``folds``: train and score the folds, leaving the study's end (post-processing
            choice, report, ensemble model, cross-validated metrics) to a later ``report`` stage,
            as cluster fold jobs do; ``report``: that end alone, once every fold is done.

    Returns:
        The run folder.

    Raises:
        MedsegError: bad data or settings, an unreachable tracking store, another run in the
            folder, or fold models there trained with other settings (without ``force``).
    """
    dist = init_distributed(cfg.train.device)
    if not dist.is_main:
        return train_worker(cfg, dist)
    if force and cfg.split.folds is not None:
        raise ConfigError(
            "--force starts the whole study afresh; run it once without --fold (split.folds), "
            "then --fold jobs go on from there"
        )
    if stage == "report" and force:
        raise ConfigError("--force starts afresh, the report stage ends a study: give one of them")
    run_dir = RunDir(cfg.output_dir)
    before = before_run(run_dir)
    run_dir.root.mkdir(parents=True, exist_ok=True)
    try:
        with run_dir.running(None if stage == "report" else cfg.split.folds):  # the report: the folder alone
            return _run(cfg, run_dir, dist, force, stage)
    except BaseException:
        undo_set_up(run_dir, Before(before.folder, frozenset(), frozenset()) if force else before)
        raise


def _run(cfg: PipelineConfig, run_dir: RunDir, dist: DistInfo, force: bool, stage: Stage) -> Path:
    """The study, with the folder held: set up under the shared-files lock, then each fold."""
    t0 = time.perf_counter()
    with run_dir.shared_files():
        if force:
            log.info("--force: removing the fold models and results in %s", run_dir.root)
            run_dir.clear()
        refuse_changed_rerun(run_dir, cfg)
        if stage == "report":
            _refuse_unfinished(cfg, run_dir)
        seed_everything(cfg.seed)
        cases, _ = ingest(cfg, run_dir.root)
        splits = load_or_make_splits(cases, cfg.split, run_dir.splits)
        cfg = resolve_statistics(resolve_channel_files(cfg, cases), cases, run_dir)
        write_text(run_dir.config, dump_config(cfg))
        prov = provenance(run_dir.config, cfg.train.device)
        write_json(run_dir.provenance, prov)
        if cfg.fingerprint is not None and Path(cfg.fingerprint).is_file():
            write_text(run_dir.fingerprint, Path(cfg.fingerprint).read_text())
        barrier(dist)
        tracker = Tracker(cfg, run_dir.root)
        state = _parent_state(cfg, tracker, run_dir)
    with tracker.ending(tracker.parent_id):
        _log_inputs(cfg, tracker, run_dir, cases, splits, prov)
        timing = _run_folds(cfg, run_dir, splits, cases, tracker, state, dist)
        seconds = round(time.perf_counter() - t0, 1)
        timing["report_seconds" if stage == "report" else "total_seconds"] = seconds
        if stage == "folds":
            with run_dir.shared_files():
                _merge_timing(run_dir, timing)
            log.info("fold(s) done; the report is left to the report stage (--stage report)")
            return run_dir.root
        summary, timing = _end_study(cfg, run_dir, splits, tracker, timing)
    dice = summary["fold_mean"][CLASS_MEAN]["dice"]
    log.info(
        "done in %.0fs: Dice %.4f ± %.4f (mean over classes and folds); report %s",
        seconds,
        dice["mean"],
        dice["std"],
        run_dir.report_html,
    )
    return run_dir.root


def _refuse_unfinished(cfg: PipelineConfig, run_dir: RunDir) -> None:
    """The report stage waits for every fold: refused, naming those not done."""
    left = unfinished_folds(cfg, run_dir)
    if left:
        raise MedsegError(
            f"{run_dir.root}: fold(s) {', '.join(map(str, left))} not done; the report stage waits "
            "for every fold: train them (medseg run PIPELINE --fold K), then run it again"
        )


def _end_study(
    cfg: PipelineConfig, run_dir: RunDir, splits: list, tracker: Tracker, timing: dict[str, float]
) -> tuple[dict[str, Any], dict[str, float]]:
    """Timing, post-processing and review-threshold choices, report and ensemble model (one job at
    a time), then the cross-validated metrics and report files on the pipeline run; the summary
    and the timing."""
    with run_dir.shared_files():  # fold jobs finishing together: one report at a time
        timing = _merge_timing(run_dir, timing)  # first: the report gives the wall time
        chosen = _choose_postprocessing(cfg, run_dir, splits, tracker)
        chosen = _choose_review_threshold(chosen, run_dir, splits, tracker)
        if chosen is not cfg:  # what predict reads
            write_text(run_dir.config, dump_config(chosen))
            tracker.log_artifact(tracker.parent_id, run_dir.config)
        summary = write_report(run_dir.root, cfg.name, cfg.evaluate.n_worst)
        _log_ensemble(cfg, run_dir, splits, tracker)
    tracker.log_metrics(tracker.parent_id, {**cv_metrics(summary), **cv_raw_metrics(summary), **timing})
    for path in (run_dir.report_html, run_dir.report_md, run_dir.summary, run_dir.timing):
        tracker.log_artifact(tracker.parent_id, path)
    return summary, timing


def _choose_postprocessing(
    cfg: PipelineConfig, run_dir: RunDir, splits: list, tracker: Tracker
) -> PipelineConfig:
    """With ``infer.largest_component: auto`` and every fold scored: choose, record the choice in
    ``postprocessing.json``, make every fold's results those of the choice (metrics, predictions,
    overlays, the fold runs' ``test/*`` metrics; the raw ones kept beside), and return the
    configuration that applies it."""
    if cfg.infer.largest_component != "auto":
        return cfg
    folds = [run_dir.fold(k) for k in range(len(splits))]
    if not all(f.postprocessing.is_file() for f in folds):
        return cfg
    choice = choose([f.postprocessing for f in folds])
    write_json(run_dir.postprocessing, choice)
    log.info("post-processing: %s", choice["reason"])
    tracker.log_artifact(tracker.parent_id, run_dir.postprocessing)
    if all(f.metrics_raw.is_file() for f in folds):
        cases = {c.id: c for c in run_dir.read_cases()}
        state = run_dir.read_state()
        for fold, split in zip(folds, splits, strict=True):
            run_id = (state["folds"].get(str(fold.index)) or {}).get("run_id")
            held_out = [cases[i] for i in split["val"] if i in cases]
            _adopt_fold(cfg, fold, choice, held_out, tracker, run_id)
    else:  # folds scored by an older medseg: their variants' metrics were not kept
        log.warning(
            "post-processing: the held-out results stay as predicted; score the folds again to adopt it"
        )
    chosen = {"largest_component": choice["value"]}
    if cfg.infer.fill_holes == "auto":
        chosen["fill_holes"] = choice["fill_holes"]
    return cfg.model_copy(update={"infer": cfg.infer.model_copy(update=chosen)})


def _adopt_fold(
    cfg: PipelineConfig,
    fold: FoldDir,
    choice: dict[str, Any],
    held_out: list[Case],
    tracker: Tracker,
    run_id: str | None,
) -> None:
    """One fold's results made those of the adopted post-processing (``choice``: :func:`choose`'s
    ``value`` and ``fill_holes``), its overlays drawn again where a prediction changed, and its
    MLflow run given the new figures and files."""
    rows, changed = adopt(fold, choice["value"], cfg.data.num_classes, choice["fill_holes"])
    if not (choice["value"] or choice["fill_holes"]):
        return
    dims = cfg.transforms.spatial_dims
    unchanged = {c.id for c in held_out if fold.prediction(c.id, dims).name not in changed}
    log.info(
        "%s: post-processing changed %d of %d held-out prediction(s)", fold.name, len(changed), len(held_out)
    )
    write_overlays(cfg, held_out, rows, fold.overlays, lambda i: fold.prediction(i, dims), keep=unchanged)
    tracker.log_metrics(run_id, fold_metrics(class_summaries(rows)))
    for path in (fold.metrics, fold.metrics_raw):
        tracker.log_artifact(run_id, path)
    tracker.log_artifact(run_id, fold.overlays, "overlays")


def _choose_review_threshold(
    cfg: PipelineConfig, run_dir: RunDir, splits: list, tracker: Tracker
) -> PipelineConfig:
    """With every fold scored: the review threshold chosen from the held-out cases (their results
    as adopted) in ``review.json``, and the configuration whose ``predict.review_threshold`` is it
    unless the user set one."""
    folds = [run_dir.fold(k) for k in range(len(splits))]
    if not all(f.metrics.is_file() for f in folds):
        return cfg
    rows = [r for f in folds for r in read_metrics_csv(f.metrics)]
    rule = review_rule(rows, cfg.predict.review_threshold)
    write_json(run_dir.review, rule)
    tracker.log_artifact(tracker.parent_id, run_dir.review)
    if "caught" in rule:
        log.info(
            "review threshold %g (%s): catches %d of %d held-out case(s) below Dice %g, flags %d of %d",
            rule["threshold"], rule["source"], rule["caught"], rule["n_low"], rule["dice_below"],
            rule["flagged"], rule["n"],
        )  # fmt: skip
    elif rule["threshold"] is None:
        log.warning("review threshold: none chosen (%s); predict flags no input", rule.get("reason"))
    if cfg.predict.review_threshold is not None or rule["threshold"] is None:
        return cfg
    return cfg.model_copy(
        update={"predict": cfg.predict.model_copy(update={"review_threshold": rule["threshold"]})}
    )


def _log_ensemble(cfg: PipelineConfig, run_dir: RunDir, splits: list, tracker: Tracker) -> None:
    """Once every fold is finished: the fold ensemble as the pipeline run's MLflow model."""
    finished = {f.index: f.best for f in run_dir.finished_folds()}
    if len(finished) < len(splits):
        return
    log.info("logging the ensemble of %d folds as an MLflow model", len(finished))
    log_ensemble(tracker, cfg, finished, run_dir.config)


def _merge_timing(run_dir: RunDir, timing: dict[str, float]) -> dict[str, float]:
    """``timing.json`` with this run's seconds added to what other fold jobs recorded."""
    merged = json.loads(run_dir.timing.read_text()) if run_dir.timing.is_file() else {}
    merged.update(timing)
    write_json(run_dir.timing, merged)
    return dict(merged)


def _parent_state(cfg: PipelineConfig, tracker: Tracker, run_dir: RunDir) -> dict[str, Any]:
    """``run_state.json`` with the pipeline's MLflow run, resumed when it is still there."""
    state = run_dir.read_state()
    if tracker.resume_parent(state.get("parent_run_id")):
        log.info("resuming the run in %s (MLflow run %s)", run_dir.root, tracker.parent_id)
    else:
        # named after the run folder: the studies of one project store are told apart in the UI
        tracker.start_parent(run_dir.root.name, cfg.model_dump(mode="json"))
        state = {"parent_run_id": tracker.parent_id, "folds": {}}
    state["experiment_id"] = tracker.experiment_id or None
    state["mlflow_store"] = tracker.store_record()
    run_dir.write_state(state)
    return state


def _log_inputs(
    cfg: PipelineConfig,
    tracker: Tracker,
    run_dir: RunDir,
    cases: list[Case],
    splits: list[dict[str, Any]],
    prov: dict[str, Any],
) -> None:
    """The plan, datalist, splits and statistics, the augmentation preview and the provenance tags
    on the parent run, and the data set's digest the first time (it reads every image and label)."""
    tags = {
        "mlflow.source.name": "medseg run",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": prov.get("git_commit"),
        "medseg.version": prov.get("medseg_version"),
        "medseg.config_digest": prov.get("config_digest"),
        "medseg.device": prov.get("device"),
    }
    if tracker.enabled and not tracker.has_dataset(tracker.parent_id):
        digest, profile = cases_digest(cases)
        tracker.log_dataset(tracker.parent_id, cfg.name, digest, "datalist.json", profile)
        tags["medseg.data_digest"] = digest
    tracker.set_tags(tracker.parent_id, tags)
    _log_datalist(tracker, run_dir)
    for path in (
        run_dir.config,
        run_dir.splits,
        run_dir.intensity_stats,
        run_dir.fingerprint,
    ):
        if path.is_file():
            tracker.log_artifact(tracker.parent_id, path)
    first_fold_train = set(splits[0]["train"])
    fit_cases = [c for c in cases if c.id in first_fold_train]
    tracker.log_artifact(tracker.parent_id, preview_grid(cfg, fit_cases or cases, run_dir.preview))


def _log_datalist(tracker: Tracker, run_dir: RunDir) -> None:
    """MLflow's copy of ``datalist.json``: DICOM files and folders named by their pseudonyms (the
    run folder's own copy keeps the paths the folds read)."""
    if not (tracker.enabled and run_dir.datalist.is_file()):
        return
    import tempfile

    written = json.loads(run_dir.datalist.read_text())
    written["cases"] = shareable(Path(written["root"]), [Case.from_json(c) for c in written["cases"]])
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / run_dir.datalist.name
        copy.write_text(json.dumps(written, indent=1))
        tracker.log_artifact(tracker.parent_id, copy)


def _folds(cfg: PipelineConfig, splits: list[dict[str, Any]]) -> list[int]:
    return cfg.split.folds if cfg.split.folds is not None else list(range(len(splits)))


def _run_folds(
    cfg: PipelineConfig,
    run_dir: RunDir,
    splits: list[dict[str, Any]],
    cases: list[Case],
    tracker: Tracker,
    state: dict[str, Any],
    dist: DistInfo,
) -> dict[str, float]:
    """Every fold not done yet; the seconds each took."""
    timing: dict[str, float] = {}
    folds = _folds(cfg, splits)
    progress = StudyBar(folds, cfg.train.epochs)
    try:
        for fold in folds:
            if run_dir.fold_is_done(state, fold, cfg.train.epochs):
                log.info("fold %d: finished earlier (%d epochs); kept", fold, cfg.train.epochs)
                progress.skip(fold)
                barrier(dist)
                continue
            log.info("%s: training; %s", progress.fold(fold), progress.eta())
            tf = time.perf_counter()
            run_fold(cfg, run_dir, fold, splits[fold], cases, tracker, state, dist, progress)
            barrier(dist)
            timing[f"fold_{fold}_seconds"] = round(time.perf_counter() - tf, 1)
    finally:
        progress.close()
    return timing


def train_worker(cfg: PipelineConfig, dist: DistInfo) -> Path:
    """The work of a rank other than 0 under torchrun: train each fold with what rank 0 wrote.

    Args:
        cfg: the bound configuration (statistics are read from the run folder).
        dist: this process's place in the group.

    Returns:
        The run folder.
    """
    run_dir = RunDir(cfg.output_dir)
    barrier(dist)  # rank 0 has ingested, split and gathered statistics
    cases = run_dir.read_cases()
    splits = load_or_make_splits(cases, cfg.split, run_dir.splits)
    cfg = resolve_statistics(resolve_channel_files(cfg, cases), cases, run_dir)
    state = run_dir.read_state()
    for fold in _folds(cfg, splits):
        if not run_dir.fold_is_done(state, fold, cfg.train.epochs):
            fit_fold(cfg, run_dir.fold(fold), splits[fold], cases, dist)
        barrier(dist)  # rank 0 evaluates the fold
    return run_dir.root
