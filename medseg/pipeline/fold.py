"""One fold of a study: train, predict the held-out cases, score them, log it all to MLflow.

Under torchrun, rank 0 runs :func:`run_fold` and every other rank :func:`train_fold_worker`; both
train with the same loaders, so the ranks stay in step.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np

from medseg.config.models import PipelineConfig
from medseg.data.splits import inner_validation
from medseg.errors import out_of_memory_named
from medseg.evaluate.casewise import Row, class_summaries, score_case, write_metrics_csv
from medseg.evaluate.postprocessing import (
    score_variants,
    variant_maps,
    variant_names,
    variant_rows,
    write_variants,
)
from medseg.infer.heldout import HeldOutCase, predict_heldout
from medseg.io.atomic import write_json
from medseg.io.case import Case
from medseg.io.checkpoint import load_weights
from medseg.progress import StudyBar
from medseg.registry import build_network
from medseg.report.overlays import write_overlays
from medseg.run_dir import FoldDir, RunDir
from medseg.runtime import pick_device, seed_everything
from medseg.tracking.mlflow_models import log_fold_model
from medseg.tracking.names import best_metrics, epoch_metrics, fold_metrics
from medseg.tracking.tracker import Tracker
from medseg.train.distributed import DistInfo
from medseg.train.loaders import make_loaders
from medseg.train.loop import FoldResult, train_fold

log = logging.getLogger(__name__)

Split = dict[str, list[str]]


def fit_fold(
    cfg: PipelineConfig,
    fold: FoldDir,
    split: Split,
    cases: list[Case],
    dist: DistInfo | None = None,
    tracker: Tracker | None = None,
    run_id: str | None = None,
    progress: StudyBar | None = None,
) -> FoldResult:
    """Seed, split the fold's training cases for early stopping, and train; every rank runs this.

    Args:
        cfg: the resolved configuration.
        fold: the fold's folder.
        split: the fold's ``train`` and ``val`` (held-out) case ids.
        cases: every usable case.
        dist: the torchrun process group, or None for one process.
        tracker: where each epoch's metrics go (rank 0), or None.
        run_id: the fold's MLflow run.
        progress: the study's progress bar, moved on each epoch.

    Returns:
        What training left: best epoch, its validation Dice and the checkpoints.

    Raises:
        MedsegError: training failed (see :func:`medseg.train.loop.train_fold`).
    """
    seed = cfg.seed + fold.index
    seed_everything(seed)
    by_id = {c.id: c for c in cases}
    fit_ids, val_ids = inner_validation(split["train"], cases, cfg.train.val_fraction, seed)
    if dist is None or dist.is_main:
        write_json(fold.inner_split, {"fit": fit_ids, "early_stopping": val_ids, "test": split["val"]})
    fit_cases, val_cases = [by_id[i] for i in fit_ids], [by_id[i] for i in val_ids]
    loaders = make_loaders(cfg, fit_cases, val_cases, seed, dist, pick_device(cfg.train.device))
    log.info(
        "%s: %d fit, %d early-stopping, %d held out", fold.name, len(fit_ids), len(val_ids), len(split["val"])
    )

    def on_epoch(row: dict[str, float]) -> None:
        if tracker is not None:
            tracker.log_metrics(run_id, epoch_metrics(row), step=int(row["epoch"]))
        if progress is not None:
            progress.epoch(fold.index, int(row["epoch"]), row["train_loss"])

    return train_fold(cfg, *loaders, fold, on_epoch=on_epoch, dist=dist)


def evaluate_fold(
    cfg: PipelineConfig,
    fold: FoldDir,
    held_out: list[Case],
    result: FoldResult,
    progress: StudyBar | None = None,
) -> list[Row]:
    """Predict the held-out cases with the best weights and score them.

    Writes the predictions, ``metrics.csv`` (with each case's uncertainty when
    ``evaluate.uncertainty``) and the overlays into the fold folder; with
    ``infer.largest_component: auto`` also each variant's Dice (``postprocessing.csv``) and
    metrics (``metrics_<variant>.csv``), and the metrics as predicted (``metrics_raw.csv``), from
    which the study's end makes the results of the variant it adopts
    (:func:`medseg.evaluate.postprocessing.adopt`).

    Args:
        cfg: the resolved configuration.
        fold: the fold's folder.
        held_out: the fold's held-out cases.
        result: the fold's training result (its best checkpoint).
        progress: the study's progress bar, told which held-out case runs.

    Returns:
        One metrics row per case and class.
    """
    device = pick_device(cfg.train.device)
    model = build_network(cfg.network).to(device)
    load_weights(model, result.best_path)
    log.info("%s: predicting and scoring %d held-out case(s)", fold.name, len(held_out))
    scores = _FoldScores(cfg)
    if scores.auto:
        shutil.rmtree(fold.predictions_raw, ignore_errors=True)  # an earlier choice's, now stale
    marks = {max(1, round(len(held_out) * q / 4)) for q in (1, 2, 3)}
    for i, case in enumerate(predict_heldout(cfg, [model], held_out, fold, device), start=1):
        if progress is not None:
            progress.note(fold.index, f"held-out case {i}/{len(held_out)}")
        if i in marks:
            log.info("%s: %d/%d held-out case(s) predicted and scored", fold.name, i, len(held_out))
        with out_of_memory_named(f"{fold.name}: scoring held-out case {case.case_id}"):
            scores.add(case)
    scores.write(fold)
    log.info("%s: drawing overlays (evaluate.overlays: %s)", fold.name, cfg.evaluate.overlays)
    write_overlays(
        cfg, held_out, scores.rows, fold.overlays, lambda i: fold.prediction(i, cfg.transforms.spatial_dims)
    )
    return scores.rows


class _FoldScores:
    """The rows of a fold's held-out cases as predicted, and with each post-processing variant
    (``infer.largest_component: auto``)."""

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self.auto = cfg.infer.largest_component == "auto"
        self.holes = cfg.infer.fill_holes == "auto"
        self.rows: list[Row] = []
        self.dice: list[dict] = []  # each variant's Dice per case and class: the choice's input
        self.variants: dict[str, list[Row]] = {v: [] for v in variant_names(self.holes)}

    def add(self, case: HeldOutCase) -> None:
        cfg = self.cfg

        def score(pred: np.ndarray) -> list[Row]:
            rows = score_case(cfg, case.case_id, pred, case.ref, case.spacing)
            return [{**r, "uncertainty": case.uncertainty} for r in rows]

        raw = score(case.pred)
        self.rows += raw
        if self.auto:
            maps = variant_maps(case.pred, cfg.data.num_classes, self.holes)
            self.dice += variant_rows(
                case.case_id, case.pred, case.ref, cfg.data.num_classes, cfg.data.ignore_value, maps
            )
            for name, rows in score_variants(maps, raw, score).items():
                self.variants[name] += rows

    def write(self, fold: FoldDir) -> None:
        if self.auto:
            write_variants(fold.postprocessing, self.dice, self.holes)
            for name, rows in self.variants.items():
                write_metrics_csv(fold.metrics_variant(name), rows)
            write_metrics_csv(fold.metrics_raw, self.rows)
        write_metrics_csv(fold.metrics, self.rows)  # the adopted variant's, once chosen


def run_fold(
    cfg: PipelineConfig,
    run: RunDir,
    index: int,
    split: Split,
    cases: list[Case],
    tracker: Tracker,
    state: dict,
    dist: DistInfo | None = None,
    progress: StudyBar | None = None,
) -> dict[str, float]:
    """Train, predict, score and log one fold in its MLflow run (started or resumed).

    The fold is recorded as done in ``run_state.json`` once its metrics and artifacts are logged.

    Args:
        cfg: the resolved configuration.
        run: the run folder.
        index: the fold number.
        split: the fold's ``train`` and ``val`` case ids.
        cases: every usable case.
        tracker: the MLflow tracker of the pipeline run.
        state: the contents of ``run_state.json``; this fold's entry is updated in place and
            written into the file as it is then (other fold jobs write theirs).
        dist: the torchrun process group, or None for one process.
        progress: the study's progress bar.

    Returns:
        The fold's MLflow metrics (best epoch, its validation Dice and the ``test_*`` means).
    """
    fold = run.fold(index)
    fold.path.mkdir(parents=True, exist_ok=True)
    entry = state["folds"].setdefault(str(index), {})
    with tracker.fold_run(index, entry.get("run_id")) as run_id:
        entry.update(run_id=run_id, done_epochs=0)
        run.record_fold(index, **entry)
        result = fit_fold(cfg, fold, split, cases, dist, tracker, run_id, progress)
        if progress is not None:
            progress.skip(index)  # epochs left by early stopping
        tracker.log_missing_history(run_id, result.history)
        by_id = {c.id: c for c in cases}
        rows = evaluate_fold(cfg, fold, [by_id[i] for i in split["val"]], result, progress)
        metrics = {
            **best_metrics(result.best_epoch, result.best_val_dice),
            **fold_metrics(class_summaries(rows)),
        }
        tracker.log_metrics(run_id, metrics)
        _log_fold_files(cfg, tracker, run_id, fold)
        log_fold_model(tracker, run_id, cfg, fold.best, run.config)
    entry["done_epochs"] = cfg.train.epochs
    run.record_fold(index, **entry)
    return metrics


def _log_fold_files(cfg: PipelineConfig, tracker: Tracker, run_id: str | None, fold: FoldDir) -> None:
    for path in (fold.metrics, fold.history, fold.inner_split):
        tracker.log_artifact(run_id, path)
    tracker.log_artifact(run_id, fold.overlays, "overlays")
    if cfg.tracking.log_checkpoints:
        tracker.log_artifact(run_id, fold.best, "checkpoints")
        tracker.log_artifact(run_id, fold.last, "checkpoints")
