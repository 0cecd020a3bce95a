"""One epoch of training, and the validation Dice that early stopping watches."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from medseg.errors import MedsegError
from medseg.train.distributed import DistInfo, all_reduce_sum
from medseg.train.state import TrainState
from medseg.train.step_options import StepOptions


@dataclass(frozen=True)
class EpochContext:
    """What every epoch of a fold uses.

    Attributes:
        net: the network to train (DDP-wrapped under torchrun, compiled with ``train.compile``).
        loss_fn: the loss.
        device: where training runs.
        options: precision and memory format of the step.
        dist: this process's place in the group.
        inferer: the sliding-window inferer of validation.
        show_bar: whether a progress bar shows.
        eager: with ``net`` compiled, the same network not compiled: it takes batches of another
            shape than the first (an epoch's smaller last batch), which would otherwise compile again.
        compiled_shape: the input shape ``net`` was compiled for, once seen.
    """

    net: nn.Module
    loss_fn: nn.Module
    device: torch.device
    options: StepOptions
    dist: DistInfo
    inferer: Any
    show_bar: bool = False
    eager: nn.Module | None = None
    compiled_shape: list[tuple[int, ...]] = field(default_factory=list)

    def network(self, image: torch.Tensor) -> nn.Module:
        """The module that steps on ``image``: ``net``, or ``eager`` for a shape it was not compiled for."""
        if self.eager is None:
            return self.net
        if not self.compiled_shape:
            self.compiled_shape.append(tuple(image.shape))
        return self.net if tuple(image.shape) == self.compiled_shape[0] else self.eager


def train_epoch(ctx: EpochContext, state: TrainState, loader: Any, where: str, of: int) -> float:
    """One pass over the training batches.

    Args:
        ctx: the network, loss, device and process group.
        state: optimiser, scheduler and grad scaler; the scheduler steps once.
        loader: augmented training batches.
        where: "fold_k epoch e", for the progress bar and errors.
        of: the number of epochs, for the progress bar.

    Returns:
        The mean training loss per case over every rank.

    Raises:
        MedsegError: the loss is not finite (NaN in the images, or a learning rate too high).
    """
    from tqdm import tqdm

    ctx.net.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"{where}/{of}", leave=False, disable=not ctx.show_bar)
    for batch in bar:
        image = ctx.options.batch(batch["image"].to(ctx.device, non_blocking=True))
        target = batch["label"].to(ctx.device, non_blocking=True)
        state.optimizer.zero_grad(set_to_none=True)
        with ctx.options.autocast(ctx.device):
            out = ctx.network(image)(image).float()  # the loss in float32 whatever the precision
            if out.dim() == image.dim() + 1:  # deep supervision: (B, outputs, C, *spatial)
                out = list(torch.unbind(out, dim=1))
            loss = ctx.loss_fn(out, target)
        if not torch.isfinite(loss):
            raise MedsegError(
                f"{where}: the training loss is {loss.item()}; check the images for NaN or infinite "
                "values, or lower train.optimizer.lr"
            )
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
        total += float(loss.item()) * image.shape[0]
        count += image.shape[0]
        bar.set_postfix(loss=f"{total / count:.4f}")
    if ctx.dist.enabled:  # the epoch's loss over every rank's cases
        total, count = all_reduce_sum(total, count, ctx.device)
    return total / max(count, 1)


def validation_dice(
    model: nn.Module, loader: Any, ctx: EpochContext, num_classes: int, ignore: int | None
) -> float:
    """Mean foreground Dice over the validation cases at training resolution.

    Args:
        model: the network (set to eval mode here).
        loader: whole validation images on the model grid.
        ctx: device, precision and inferer.
        num_classes: classes including background.
        ignore: label value left out of the score.

    Returns:
        The mean Dice over cases and foreground classes.
    """
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=False, reduction="mean", ignore_empty=False)
    model.eval()
    with torch.no_grad(), ctx.options.autocast(ctx.device):
        for batch in loader:
            image = batch["image"].to(ctx.device)
            label = batch["label"].to(ctx.device)
            pred = ctx.inferer(image, model).argmax(1, keepdim=True)
            if ignore is not None:
                keep = label != ignore
                pred, label = pred * keep, label * keep
            onehot_p = torch.nn.functional.one_hot(pred[:, 0].long(), num_classes).movedim(-1, 1)
            onehot_l = torch.nn.functional.one_hot(label[:, 0].long(), num_classes).movedim(-1, 1)
            metric(onehot_p, onehot_l)
    result = metric.aggregate()
    assert isinstance(result, torch.Tensor)
    return float(result.item())
