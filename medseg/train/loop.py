"""Training of one fold: AdamW with a cosine schedule, early stopping on validation Dice.

AMP (float16) and ``cudnn.benchmark`` are used on CUDA; on the CPU training runs in float32, or in
bfloat16 autocast with ``train.precision``; ``train.channels_last`` and ``train.compile`` apply on
both (:mod:`medseg.train.step_options`). The best (validation Dice) and last checkpoints go to
``fold_k/checkpoints/``, the per-epoch history to ``fold_k/history.csv`` and, through
``on_epoch``, to MLflow. The steps are named: a
:class:`~medseg.train.state.TrainState` is made or resumed (:mod:`medseg.train.state`), then each
epoch trains (:func:`~medseg.train.epoch.train_epoch`), validates
(:func:`~medseg.train.epoch.validation_dice`), keeps the best weights and saves ``last.pt``.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.config.models import PipelineConfig
from medseg.io.atomic import atomic_path
from medseg.io.checkpoint import save_checkpoint
from medseg.registry import build_inferer
from medseg.run_dir import FoldDir
from medseg.runtime import pick_device, set_determinism
from medseg.train.distributed import DistInfo
from medseg.train.epoch import EpochContext, train_epoch, validation_dice
from medseg.train.losses import training_loss
from medseg.train.state import TrainState, new_state, resume, save_best
from medseg.train.step_options import step_options, trained_module

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, float]], None]
HISTORY_FIELDS = ["epoch", "train_loss", "val_dice", "lr", "seconds"]


@dataclass
class FoldResult:
    """What a fold's training leaves.

    Attributes:
        best_epoch: the epoch of the best validation Dice (the last epoch without validation).
        best_val_dice: that Dice, NaN without early-stopping cases.
        epochs_run: the epochs in the history.
        best_path: ``best.pt``.
        last_path: ``last.pt``.
        history: one row of losses and Dice per epoch.
    """

    best_epoch: int
    best_val_dice: float
    epochs_run: int
    best_path: Path
    last_path: Path
    history: list[dict[str, float]]


def train_fold(
    cfg: PipelineConfig,
    train_loader: Any,
    val_loader: Any | None,
    fold: FoldDir,
    on_epoch: EpochCallback | None = None,
    dist: DistInfo | None = None,
) -> FoldResult:
    """Train one fold, resuming from its ``last.pt`` when there is one.

    Args:
        cfg: the resolved pipeline configuration.
        train_loader: augmented training batches (``image``, ``label``).
        val_loader: early-stopping cases on the model grid, or None to keep the last epoch.
        fold: the fold's folder; under torchrun only rank 0 writes into it.
        on_epoch: called with each epoch's history row (rank 0).
        dist: the torchrun process group, or None for one process.

    Returns:
        The best epoch, its validation Dice (NaN without early-stopping cases) and the checkpoints.

    Raises:
        MedsegError: a non-finite training loss, or a checkpoint that cannot be written.
    """
    dist = dist or DistInfo()
    device = pick_device(cfg.train.device)
    options = step_options(cfg.train, device)
    set_determinism(cfg.train.deterministic, device)
    state = new_state(cfg, device, options)
    loss_fn = training_loss(cfg).to(device)
    chain = getattr(getattr(train_loader, "dataset", None), "transform", None)
    generator = getattr(train_loader, "generator", None)
    resume(state, fold.last, cfg, chain, generator)
    net = _parallel(state, dist, device)
    ctx = EpochContext(
        net=trained_module(net, options),
        loss_fn=loss_fn,
        device=device,
        options=options,
        dist=dist,
        inferer=build_inferer(cfg.infer, cfg.roi_size),
        show_bar=sys.stderr.isatty() and dist.is_main,
        eager=net if options.compile else None,
    )
    first = cfg.train.epochs if state.stopped else state.epoch
    for epoch in range(first, cfg.train.epochs):
        row = _one_epoch(cfg, state, ctx, train_loader, val_loader, fold, epoch)
        if dist.is_main:
            _record_epoch(state, row, fold, cfg.train.epochs, state.full(chain, generator), on_epoch)
        if state.stopped:
            break
    if dist.is_main and not fold.last.is_file():  # train.epochs reached before this call
        save_checkpoint(fold.last, state.full(chain, generator))
    best_dice = math.nan if val_loader is None else state.best_dice
    return FoldResult(state.best_epoch, best_dice, len(state.history), fold.best, fold.last, state.history)


def _record_epoch(
    state: TrainState,
    row: dict[str, float],
    fold: FoldDir,
    epochs: int,
    checkpoint: dict[str, Any],
    on_epoch: EpochCallback | None,
) -> None:
    """Rank 0's bookkeeping after an epoch: ``last.pt``, the history CSV, the log line, the callback."""
    save_checkpoint(fold.last, checkpoint)
    _write_history(fold.history, state.history)
    _log_epoch(fold.name, row, epochs)
    if on_epoch:
        on_epoch(row)
    if state.stopped:
        log.info("%s: early stop after %d epochs without a better validation Dice", fold.name, state.stale)


def _parallel(state: TrainState, dist: DistInfo, device: torch.device) -> torch.nn.Module:
    """The network to train: wrapped in DDP under torchrun, after loading, so every rank starts
    from the same weights."""
    if not dist.enabled:
        return state.model
    from torch.nn.parallel import DistributedDataParallel

    ids = [dist.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(state.model, device_ids=ids)


def _one_epoch(
    cfg: PipelineConfig,
    state: TrainState,
    ctx: EpochContext,
    train_loader: Any,
    val_loader: Any | None,
    fold: FoldDir,
    epoch: int,
) -> dict[str, float]:
    """Train one epoch, step the schedule, validate when due, keep the best weights; the history
    row of the epoch."""
    start = time.perf_counter()
    loss = train_epoch(ctx, state, train_loader, f"{fold.name} epoch {epoch + 1}", cfg.train.epochs)
    lr = state.optimizer.param_groups[0]["lr"]
    state.scheduler.step()
    state.epoch = epoch + 1
    row: dict[str, float] = {"epoch": epoch + 1, "train_loss": loss, "lr": lr}
    if val_loader is None:  # no early-stopping cases: the latest epoch is kept
        if ctx.dist.is_main:
            save_best(state, fold.best, math.nan)
        state.best_epoch = epoch + 1
    elif (epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs:
        row["val_dice"] = _validate(cfg, state, ctx, val_loader, fold)
    row["seconds"] = time.perf_counter() - start
    state.history.append(row)
    patience = cfg.train.patience
    state.stopped = patience is not None and state.stale >= patience and epoch + 1 >= cfg.train.min_epochs
    return row


def _validate(
    cfg: PipelineConfig, state: TrainState, ctx: EpochContext, val_loader: Any, fold: FoldDir
) -> float:
    """Validation Dice of the epoch; a better one becomes ``best.pt``, else the fold grows stale."""
    dice = validation_dice(state.model, val_loader, ctx, cfg.data.num_classes, cfg.data.ignore_value)
    if dice > state.best_dice:
        state.best_dice, state.best_epoch, state.stale = dice, state.epoch, 0
        if ctx.dist.is_main:
            save_best(state, fold.best, dice)
    else:
        state.stale += cfg.train.val_every
    return dice


def _log_epoch(name: str, row: dict[str, float], epochs: int) -> None:
    log.info(
        "%s epoch %d/%d loss %.4f val_dice %s (%.1fs)",
        name,
        int(row["epoch"]),
        epochs,
        row["train_loss"],
        f"{row['val_dice']:.4f}" if "val_dice" in row else "-",
        row["seconds"],
    )


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)
