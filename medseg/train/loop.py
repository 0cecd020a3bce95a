"""Training of one fold: AdamW with a cosine schedule, early stopping on validation Dice.

AMP and ``cudnn.benchmark`` are used on CUDA; on the CPU training runs in float32. The best
(validation Dice) and last checkpoints go to ``fold_k/checkpoints/``, the per-epoch history to
``fold_k/history.csv`` and to MLflow.

``last.pt`` is rewritten after every epoch with everything needed to continue: model, optimiser,
scheduler, grad scaler, the random states (:mod:`medseg.train.rng`), the epoch, the early-stopping
counters and the history. When it exists, training resumes after its epoch; a fold that reached
``train.epochs`` or stopped early is not trained again, and a larger ``train.epochs`` extends it.
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
from torch import nn

from medseg.config import PipelineConfig
from medseg.errors import MedsegError
from medseg.infer.sliding import make_inferer
from medseg.io.atomic import atomic_path
from medseg.registry import network_args, network_class
from medseg.train import rng
from medseg.train.checkpoint import save_checkpoint
from medseg.train.distributed import DistInfo, all_reduce_sum
from medseg.train.losses import build_loss

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, float]], None]


@dataclass
class FoldResult:
    best_epoch: int
    best_val_dice: float
    epochs_run: int
    best_path: Path
    last_path: Path
    history: list[dict[str, float]]


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise MedsegError("train.device: cuda asked for but no CUDA device is visible; use auto or cpu")
    if setting == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def set_determinism(on: bool, device: torch.device) -> None:
    """Deterministic algorithms (and no cuDNN autotuning) when ``on``; autotuned cuDNN otherwise."""
    import os

    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = device.type == "cuda" and not on


def build_network(cfg: PipelineConfig) -> nn.Module:
    return network_class(cfg.model.name)(**network_args(cfg))


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: PipelineConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up (optional) then cosine decay to ``eta_min`` over the remaining epochs."""
    opt = cfg.train.optimizer
    total, warm = cfg.train.epochs, min(opt.warmup_epochs, cfg.train.epochs - 1)
    floor = opt.eta_min / opt.lr

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / (warm + 1)
        progress = (epoch - warm) / max(1, total - warm)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def validation_dice(
    model: nn.Module,
    loader: Any,
    inferer: Any,
    device: torch.device,
    num_classes: int,
    ignore: int | None,
    amp: bool,
) -> float:
    """Mean foreground Dice over the validation cases at training resolution."""
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=False, reduction="mean", ignore_empty=False)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        for batch in loader:
            image = batch["image"].to(device)
            label = batch["label"].to(device)
            logits = inferer(image, model)
            pred = logits.argmax(1, keepdim=True)
            if ignore is not None:
                keep = label != ignore
                pred, label = pred * keep, label * keep
            onehot_p = torch.nn.functional.one_hot(pred[:, 0].long(), num_classes).movedim(-1, 1)
            onehot_l = torch.nn.functional.one_hot(label[:, 0].long(), num_classes).movedim(-1, 1)
            metric(onehot_p, onehot_l)
    result = metric.aggregate()
    assert isinstance(result, torch.Tensor)
    return float(result.item())


def train_fold(
    cfg: PipelineConfig,
    train_loader: Any,
    val_loader: Any | None,
    fold_dir: Path,
    on_epoch: EpochCallback | None = None,
    dist: DistInfo | None = None,
) -> FoldResult:
    """Train one fold; under torchrun every rank calls this and only rank 0 writes files."""
    from tqdm import tqdm

    dist = dist or DistInfo()
    main = dist.is_main

    device = pick_device(cfg.train.device)
    amp = cfg.train.amp and device.type == "cuda"
    set_determinism(cfg.train.deterministic, device)
    model = build_network(cfg).to(device)
    loss_fn = build_loss(cfg.train.loss, cfg.data.ignore_value).to(device)
    opt_cfg = cfg.train.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    inferer = make_inferer(cfg)
    ckpt_dir = fold_dir / "checkpoints"
    best_path, last_path = ckpt_dir / "best.pt", ckpt_dir / "last.pt"
    best_dice, best_epoch, stale = -1.0, -1, 0
    history: list[dict[str, float]] = []
    show_bar = sys.stderr.isatty() and main
    chain = getattr(getattr(train_loader, "dataset", None), "transform", None)
    generator = getattr(train_loader, "generator", None)
    first_epoch, stopped = 0, False
    if last_path.is_file():
        from medseg.train.checkpoint import load_weights

        saved = load_weights(model, last_path)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        first_epoch, stopped = int(saved["epoch"]), bool(saved.get("stopped", False))
        best_dice, best_epoch, stale = saved["val_dice"], int(saved["best_epoch"]), int(saved["stale"])
        history = [dict(h) for h in saved.get("history", [])]
        if "rng" in saved:
            rng.restore(saved["rng"], chain, generator)
        for group in optimizer.param_groups:  # the schedule follows the (possibly extended) epochs
            group["lr"] = opt_cfg.lr * scheduler.lr_lambdas[0](first_epoch)  # type: ignore[attr-defined]
        if first_epoch < cfg.train.epochs and not stopped:
            log.info("%s: resuming after epoch %d of %d", fold_dir.name, first_epoch, cfg.train.epochs)
    if stopped:
        first_epoch = cfg.train.epochs
    net: nn.Module = model
    if dist.enabled:  # after loading: every rank starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dist.local_rank] if device.type == "cuda" else None)

    for epoch in range(first_epoch, cfg.train.epochs):
        start = time.perf_counter()
        net.train()
        total, count = 0.0, 0
        bar = tqdm(
            train_loader,
            desc=f"{fold_dir.name} epoch {epoch + 1}/{cfg.train.epochs}",
            leave=False,
            disable=not show_bar,
        )
        for batch in bar:
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=amp):
                loss = loss_fn(net(image), label)
            if not torch.isfinite(loss):
                raise MedsegError(
                    f"{fold_dir.name} epoch {epoch + 1}: the training loss is {loss.item()}; check the "
                    "images for NaN or infinite values, or lower train.optimizer.lr"
                )
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.item()) * image.shape[0]
            count += image.shape[0]
            bar.set_postfix(loss=f"{total / count:.4f}")
        if dist.enabled:  # the epoch's loss over every rank's cases
            total, count = all_reduce_sum(total, count, device)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        row: dict[str, float] = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "lr": lr}
        if val_loader is None:  # no early-stopping cases: the latest epoch is kept
            if main:
                save_checkpoint(best_path, _state(model, optimizer, scheduler, scaler, epoch + 1, math.nan))
            best_epoch = epoch + 1
        elif (epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs:
            dice = validation_dice(
                model, val_loader, inferer, device, cfg.data.num_classes, cfg.data.ignore_value, amp
            )
            row["val_dice"] = dice
            if dice > best_dice:
                best_dice, best_epoch, stale = dice, epoch + 1, 0
                if main:
                    save_checkpoint(best_path, _state(model, optimizer, scheduler, scaler, epoch + 1, dice))
            else:
                stale += cfg.train.val_every
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        patience = cfg.train.patience
        stopped = patience is not None and stale >= patience and epoch + 1 >= cfg.train.min_epochs
        state = _state(model, optimizer, scheduler, scaler, epoch + 1, best_dice)
        state.update(best_epoch=best_epoch, stale=stale, stopped=stopped, history=history)
        state["rng"] = rng.capture(chain, generator)
        if not main:  # other ranks only train; the same early-stopping decision ends them too
            if stopped:
                break
            continue
        save_checkpoint(last_path, state)
        _write_history(fold_dir / "history.csv", history)
        log.info(
            "%s epoch %d/%d loss %.4f val_dice %s (%.1fs)",
            fold_dir.name,
            epoch + 1,
            cfg.train.epochs,
            row["train_loss"],
            f"{row['val_dice']:.4f}" if "val_dice" in row else "-",
            row["seconds"],
        )
        if on_epoch:
            on_epoch(row)
        if stopped:
            log.info("%s: early stop after %d epochs without a better validation Dice", fold_dir.name, stale)
            break
    if main and not last_path.is_file():  # train.epochs reached before this call: nothing was trained
        save_checkpoint(last_path, _state(model, optimizer, scheduler, scaler, len(history), best_dice))
    best_dice = math.nan if val_loader is None else best_dice
    return FoldResult(best_epoch, best_dice, len(history), best_path, last_path, history)


def _state(
    model: nn.Module, optimizer: Any, scheduler: Any, scaler: Any, epoch: int, dice: float
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "val_dice": dice,
    }


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    fields = ["epoch", "train_loss", "val_dice", "lr", "seconds"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
