"""``medseg run``: ingest -> splits -> for each fold: train -> infer -> evaluate -> report.

Every stage writes files into the run folder (``output_dir``) and MLflow logs the same files:

    config.yaml  datalist.json  splits.json  intensity_stats.json  preview.png  timing.json
    run_state.json (MLflow run ids and finished folds, so a killed run resumes)
    fold_k/checkpoints/{best,last}.pt  fold_k/history.csv  fold_k/inner_split.json
    fold_k/predictions/<id>.png|.nii.gz  fold_k/metrics.csv  fold_k/overlays/
    report.html  report.md  summary.json  mlflow.db  mlartifacts/
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import PipelineConfig, dump_config
from medseg.data.datalist import Case, build_datalist
from medseg.data.splits import inner_validation, load_or_make_splits
from medseg.io.atomic import write_json, write_text
from medseg.tracking import Tracker, label_suffix
from medseg.train.distributed import (
    DistInfo,
    ShardedBatchSampler,
    barrier,
    init_distributed,
    local_batch_size,
)

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def ingest(cfg: PipelineConfig, run_dir: Path) -> tuple[list[Case], list[Case]]:
    """Generate the synthetic set if configured and missing, verify pairs, write datalist.json."""
    from medseg.registry import read_channels

    spec = cfg.data.synthetic
    if spec is not None and not Path(cfg.data.root).exists():
        log.info("generating %d synthetic %s cases in %s", spec.n_cases, spec.kind, cfg.data.root)
        if spec.kind == "ct":
            from medseg.data.synthetic_ct import generate_ct_dataset

            generate_ct_dataset(cfg.data, spec)
        else:
            from medseg.data.synthetic import generate_dataset

            generate_dataset(cfg.data, spec)
    cases, bad = build_datalist(cfg.data, cfg.transforms.spatial_dims, read_channels(cfg))
    write_json(run_dir / "datalist.json", {"root": str(cfg.data.root), "cases": cases, "bad_cases": bad})
    log.info("ingest: %d cases, %d skipped", len(cases), len(bad))
    return cases, bad


def make_loaders(
    cfg: PipelineConfig, fit: list[Case], val: list[Case], seed: int, dist: DistInfo | None = None
) -> tuple[Any, Any | None]:
    """Cached training (augmented) and early-stopping (not augmented) loaders on the model grid;
    no early-stopping loader when ``val`` is empty (``train.val_fraction: 0``)."""
    from monai.data import CacheDataset, DataLoader

    from medseg.transforms.chain import eval_transforms, train_transforms

    def items(cases: list[Case]) -> list[dict[str, str]]:  # only what collates
        return [{"id": c["id"], "image": c["image"], "label": c["label"]} for c in cases]

    chain = train_transforms(cfg)
    chain.set_random_state(seed=seed)
    workers = cfg.train.num_workers
    cache = cfg.train.cache_rate
    train_ds = CacheDataset(items(fit), chain, cache_rate=cache, num_workers=workers or None, progress=False)
    generator = torch.Generator().manual_seed(seed)
    pin = torch.cuda.is_available() and cfg.train.device != "cpu"
    if dist is not None and dist.enabled:
        local = local_batch_size(cfg.train.batch_size, dist)
        sampler = ShardedBatchSampler(len(train_ds), cfg.train.batch_size, dist, generator)
        train_loader = DataLoader(
            train_ds, batch_sampler=sampler, num_workers=workers, generator=generator, pin_memory=pin
        )
        log.info("rank %d of %d: %d cases per step", dist.rank, dist.world, local)
    else:
        train_loader = DataLoader(
            train_ds,
            batch_size=cfg.train.batch_size,
            shuffle=True,
            num_workers=workers,
            generator=generator,
            pin_memory=pin,
        )
    if not val:
        return train_loader, None
    val_ds = CacheDataset(items(val), eval_transforms(cfg), cache_rate=cache, progress=False)
    # whole images on a resampled grid differ in size, so they are validated one at a time
    val_batch = cfg.train.batch_size if cfg.transforms.spatial_size is not None else 1
    val_loader = DataLoader(val_ds, batch_size=val_batch, shuffle=False, num_workers=workers, pin_memory=pin)
    return train_loader, val_loader


STATE_FILE = "run_state.json"


def read_state(run_dir: Path) -> dict[str, Any]:
    """What an earlier (perhaps killed) run in this folder recorded: MLflow run ids, finished folds."""
    import json

    path = run_dir / STATE_FILE
    if not path.is_file():
        return {"parent_run_id": None, "folds": {}}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is unreadable; starting new MLflow runs", path)
        return {"parent_run_id": None, "folds": {}}
    state.setdefault("folds", {})
    return dict(state)


def fold_is_done(cfg: PipelineConfig, state: dict[str, Any], fold: int, run_dir: Path) -> bool:
    entry = state["folds"].get(str(fold), {})
    return bool(
        entry.get("done_epochs", 0) >= cfg.train.epochs
        and (run_dir / f"fold_{fold}" / "metrics.csv").is_file()
    )


def run_fold(
    cfg: PipelineConfig,
    fold: int,
    split: dict[str, list[str]],
    cases: list[Case],
    run_dir: Path,
    tracker: Tracker,
    state: dict[str, Any] | None = None,
    dist: DistInfo | None = None,
) -> dict[str, float]:
    from medseg.evaluate.casewise import evaluate_cases
    from medseg.evaluate.metrics import DISTANCE_METRICS, METRIC_NAMES, summarize_rows
    from medseg.train.checkpoint import load_weights
    from medseg.train.loop import build_network, pick_device, train_fold

    fold_dir = run_dir / f"fold_{fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    by_id = {c["id"]: c for c in cases}
    seed = cfg.seed + fold
    seed_everything(seed)
    fit_ids, val_ids = inner_validation(split["train"], cases, cfg.train.val_fraction, seed)
    write_json(
        fold_dir / "inner_split.json", {"fit": fit_ids, "early_stopping": val_ids, "test": split["val"]}
    )
    state = state if state is not None else {"folds": {}}
    entry = state["folds"].setdefault(str(fold), {})
    run_id = entry.get("run_id")
    if not tracker.resume(run_id):
        run_id = tracker.start_fold(fold)
    entry.update(run_id=run_id, done_epochs=0)
    write_json(run_dir / STATE_FILE, state)
    try:
        train_loader, val_loader = make_loaders(
            cfg, [by_id[i] for i in fit_ids], [by_id[i] for i in val_ids], seed, dist
        )
        log.info(
            "fold %d: %d fit, %d early-stopping, %d held out",
            fold,
            len(fit_ids),
            len(val_ids),
            len(split["val"]),
        )
        result = train_fold(
            cfg,
            train_loader,
            val_loader,
            fold_dir,
            on_epoch=lambda row: tracker.log_metrics(
                run_id, {k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"])
            ),
            dist=dist,
        )
        tracker.log_missing_history(run_id, result.history)
        device = pick_device(cfg.train.device)
        model = build_network(cfg).to(device)
        load_weights(model, result.best_path)
        rows = evaluate_cases(cfg, [model], [by_id[i] for i in split["val"]], fold_dir, device)
        fold_metrics: dict[str, float] = {
            "best_epoch": result.best_epoch,
            "best_val_dice": result.best_val_dice,
        }
        for label in range(1, cfg.data.num_classes):
            suffix = label_suffix(label, cfg.data.num_classes)
            stats = summarize_rows([r for r in rows if r["label"] == label])
            for m in METRIC_NAMES:
                fold_metrics[f"test_{m}{suffix}"] = float(stats[m]["mean"])
                if m in DISTANCE_METRICS:
                    fold_metrics[f"test_{m}_n_infinite{suffix}"] = float(stats[m]["n_infinite"])
                    fold_metrics[f"test_{m}_capped{suffix}"] = float(stats[m]["capped_mean"])
        tracker.log_metrics(run_id, fold_metrics)
        for name in ("metrics.csv", "history.csv", "inner_split.json", "overlays"):
            tracker.log_artifact(run_id, fold_dir / name, name if name == "overlays" else None)
        if cfg.tracking.log_checkpoints:
            tracker.log_artifact(run_id, result.best_path, "checkpoints")
            tracker.log_artifact(run_id, result.last_path, "checkpoints")
        tracker.end(run_id)
        entry["done_epochs"] = cfg.train.epochs
        write_json(run_dir / STATE_FILE, state)
        return fold_metrics
    except BaseException as err:
        tracker.end(run_id, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise


def train_worker(cfg: PipelineConfig, dist: DistInfo) -> Path:
    """A rank other than 0 under torchrun: read what rank 0 wrote, train each fold with it."""
    import json

    from medseg.data.intensity_stats import fill_clip_zscore
    from medseg.train.loop import train_fold

    run_dir = Path(cfg.output_dir)
    barrier(dist)  # rank 0 has ingested, split and gathered statistics
    cases = json.loads((run_dir / "datalist.json").read_text())["cases"]
    splits = load_or_make_splits(cases, cfg.split, run_dir)
    fill_clip_zscore(cfg, cases, run_dir)
    state = read_state(run_dir)
    by_id = {c["id"]: c for c in cases}
    folds = cfg.split.folds if cfg.split.folds is not None else list(range(len(splits)))
    for fold in folds:
        if not fold_is_done(cfg, state, fold, run_dir):
            seed = cfg.seed + fold
            seed_everything(seed)
            fit_ids, val_ids = inner_validation(splits[fold]["train"], cases, cfg.train.val_fraction, seed)
            loaders = make_loaders(cfg, [by_id[i] for i in fit_ids], [by_id[i] for i in val_ids], seed, dist)
            train_fold(cfg, *loaders, run_dir / f"fold_{fold}", dist=dist)
        barrier(dist)  # rank 0 evaluates the fold
    return run_dir


def run(cfg: PipelineConfig) -> Path:
    """Run the whole study described by ``cfg``; return the run folder."""
    from medseg.evaluate.report import write_report
    from medseg.preview import preview_grid

    dist = init_distributed(cfg.train.device)
    if not dist.is_main:
        return train_worker(cfg, dist)
    t0 = time.perf_counter()
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", dump_config(cfg))
    seed_everything(cfg.seed)
    cases, _ = ingest(cfg, run_dir)
    splits = load_or_make_splits(cases, cfg.split, run_dir)
    from medseg.data.intensity_stats import STATS_FILE, fill_clip_zscore

    if fill_clip_zscore(cfg, cases, run_dir) is not None:
        write_text(run_dir / "config.yaml", dump_config(cfg))  # the resolved plan records the statistics
    barrier(dist)
    tracker = Tracker(cfg, run_dir)
    state = read_state(run_dir)
    if tracker.resume_parent(state.get("parent_run_id")):
        log.info("resuming the run in %s (MLflow run %s)", run_dir, tracker.parent_id)
    else:
        tracker.start_parent(f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}", cfg.model_dump(mode="json"))
        state = {"parent_run_id": tracker.parent_id, "folds": {}}
    write_json(run_dir / STATE_FILE, state)
    parent = tracker.parent_id
    try:
        for name in ("config.yaml", "datalist.json", "splits.json", STATS_FILE):
            if (run_dir / name).is_file():
                tracker.log_artifact(parent, run_dir / name)
        first_fold_train = set(splits[0]["train"])
        fit_cases = [c for c in cases if c["id"] in first_fold_train]
        tracker.log_artifact(parent, preview_grid(cfg, fit_cases or cases, run_dir / "preview.png"))
        folds = cfg.split.folds if cfg.split.folds is not None else list(range(len(splits)))
        timing: dict[str, float] = {}
        for fold in folds:
            if fold_is_done(cfg, state, fold, run_dir):
                log.info("fold %d: finished earlier (%d epochs); kept", fold, cfg.train.epochs)
                barrier(dist)
                continue
            tf = time.perf_counter()
            run_fold(cfg, fold, splits[fold], cases, run_dir, tracker, state, dist)
            barrier(dist)
            timing[f"fold_{fold}_seconds"] = round(time.perf_counter() - tf, 1)
        timing["total_seconds"] = round(time.perf_counter() - t0, 1)
        write_json(run_dir / "timing.json", timing)
        summary = write_report(run_dir, cfg.name)
        headline: dict[str, float] = {}
        for label_key, per_metric in summary["fold_mean"].items():
            suffix = label_suffix(int(label_key.removeprefix("label_")), cfg.data.num_classes)
            for m, stats in per_metric.items():
                headline[f"cv_{m}_mean{suffix}"] = stats["mean"]
                headline[f"cv_{m}_std{suffix}"] = stats["std"]
        tracker.log_metrics(parent, {**headline, **timing})
        for name in ("report.html", "report.md", "summary.json", "timing.json"):
            tracker.log_artifact(parent, run_dir / name)
        tracker.end(parent)
        dice = summary["fold_mean"]["label_1"]["dice"]
        log.info(
            "done in %.0fs: mean Dice %.4f ± %.4f; report %s",
            timing["total_seconds"],
            dice["mean"],
            dice["std"],
            run_dir / "report.html",
        )
    except BaseException as err:
        tracker.end(parent, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
    return run_dir
