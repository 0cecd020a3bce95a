"""The state of a fold's training, and ``last.pt``, which holds all of it.

``last.pt`` is rewritten after every epoch with everything needed to continue: model, optimiser,
scheduler, grad scaler, the random states (:mod:`medseg.train.rng`), the epoch, the early-stopping
counters and the history. When it exists, training resumes after its epoch; a fold that reached
``train.epochs`` or stopped early is not trained again, and a larger ``train.epochs`` extends it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.config.models import PipelineConfig
from medseg.io.checkpoint import load_weights, save_checkpoint
from medseg.registry import build_network
from medseg.train import rng
from medseg.train.step_options import StepOptions, to_memory_format

log = logging.getLogger(__name__)


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


@dataclass
class TrainState:
    """Model and optimiser objects with the counters of early stopping.

    Attributes:
        model: the network.
        optimizer: AdamW.
        scheduler: the cosine learning-rate schedule.
        scaler: the grad scaler of mixed precision.
        epoch: the epochs trained.
        best_dice: the best validation Dice so far (-1 before any).
        best_epoch: its epoch.
        stale: the epochs since the best validation Dice.
        stopped: early stopping has ended training.
        history: one row per epoch.
        channel_names: the input channels the network is trained on, in order (``data.channel_names``;
            None when the data name none), recorded in every checkpoint so that ``predict`` can
            refuse inputs whose channels differ.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    epoch: int = 0
    best_dice: float = -1.0
    best_epoch: int = -1
    stale: int = 0
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    channel_names: list[str] | None = None

    def weights(self, dice: float | None = None) -> dict[str, Any]:
        """What ``best.pt`` holds: weights, optimiser states, the epoch, its validation Dice and the
        channel names."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "val_dice": self.best_dice if dice is None else dice,
            "channel_names": self.channel_names,
        }

    def full(self, chain: Any, generator: Any) -> dict[str, Any]:
        """What ``last.pt`` holds: :meth:`weights` plus counters, history and random states."""
        return {
            **self.weights(),
            "best_epoch": self.best_epoch,
            "stale": self.stale,
            "stopped": self.stopped,
            "history": self.history,
            "rng": rng.capture(chain, generator),
        }


def new_state(cfg: PipelineConfig, device: torch.device, options: StepOptions) -> TrainState:
    """A freshly initialised network with AdamW, its cosine schedule and a grad scaler.

    Args:
        cfg: the resolved configuration (network, optimiser, epochs).
        device: where the network lives.
        options: the step's options: the memory format of the weights, and whether gradients are
            scaled (float16 autocast).

    Returns:
        The training state at epoch 0.
    """
    model = to_memory_format(build_network(cfg.network).to(device), options, cfg.transforms.spatial_dims)
    opt = cfg.train.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=options.scaled)
    names = list(cfg.data.channel_names) if cfg.data.channel_names else None
    return TrainState(model, optimizer, make_scheduler(optimizer, cfg), scaler, channel_names=names)


def resume(state: TrainState, last: Path, cfg: PipelineConfig, chain: Any, generator: Any) -> None:
    """Continue from ``last.pt`` when it exists: weights, optimiser, counters and random states.

    The learning rate follows the (possibly extended) schedule of ``train.epochs``.

    Args:
        state: the fresh state, updated in place.
        last: the fold's ``last.pt``; nothing happens when it is absent.
        cfg: the resolved configuration.
        chain: the training transform chain whose random states are restored.
        generator: the loader's shuffling generator.

    Raises:
        MedsegError: the checkpoint cannot be read or does not fit the network.
    """
    if not last.is_file():
        return
    saved = load_weights(state.model, last)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.scaler.load_state_dict(saved["scaler"])
    state.epoch, state.stopped = int(saved["epoch"]), bool(saved.get("stopped", False))
    state.best_dice, state.best_epoch = saved["val_dice"], int(saved["best_epoch"])
    state.stale = int(saved["stale"])
    state.history = [dict(h) for h in saved.get("history", [])]
    if "rng" in saved:
        rng.restore(saved["rng"], chain, generator)
    for group in state.optimizer.param_groups:
        group["lr"] = cfg.train.optimizer.lr * state.scheduler.lr_lambdas[0](state.epoch)
    if state.epoch < cfg.train.epochs and not state.stopped:
        log.info("%s: resuming after epoch %d of %d", last.parent.parent.name, state.epoch, cfg.train.epochs)


def save_best(state: TrainState, path: Path, dice: float) -> None:
    """Write ``best.pt`` with the weights of the current epoch and its validation Dice."""
    save_checkpoint(path, state.weights(dice))
