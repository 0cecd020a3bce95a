"""Losses from the registry, with an ignore value masked out of every term.

MONAI's DiceLoss, TverskyLoss and FocalLoss take ``ignore_index`` themselves; its compound
DiceCE and DiceFocal losses do not, so with an ignore value they are rebuilt as the same weighted
sum MONAI computes (its DiceLoss plus torch's cross-entropy, or plus its FocalLoss, with the same
arguments), each term masking the value. Without ignored pixels the two agree (tested).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from medseg.config.models import ComponentConfig, PipelineConfig
from medseg.registry import loss_args, loss_class


class DiceWithPixelLoss(nn.Module):
    """``lambda_dice * Dice + lambda_pixel * pixel_term`` where both terms skip ``ignore_index`` pixels.

    Args:
        dice: the Dice term.
        pixel: the pixel-wise term (cross-entropy or focal).
        lambda_dice: weight of the Dice term.
        lambda_pixel: weight of the pixel term.
    """

    def __init__(self, dice: nn.Module, pixel: nn.Module, lambda_dice: float, lambda_pixel: float) -> None:
        super().__init__()
        self.dice, self.pixel = dice, pixel
        self.lambda_dice, self.lambda_pixel = lambda_dice, lambda_pixel

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dice = self.dice(logits, target)
        if isinstance(self.pixel, nn.CrossEntropyLoss):
            pixel = self.pixel(logits, target[:, 0].long())
        else:
            pixel = self.pixel(logits, target)
        return self.lambda_dice * dice + self.lambda_pixel * pixel


class MaskedFocalLoss(nn.Module):
    """MONAI's FocalLoss with ignored pixels removed from the sum and from the mean's count.

    MONAI 1.6.1's own ``FocalLoss(ignore_index=...)`` divides the sum over all channels by the
    number of valid pixels of one channel, which inflates the mean by the number of channels.

    Args:
        ignore_index: the label value left out.
        reduction: ``mean``, ``sum`` or ``none``.
        **kwargs: passed to ``monai.losses.FocalLoss``.
    """

    def __init__(self, ignore_index: int, reduction: str = "mean", **kwargs: Any) -> None:
        super().__init__()
        from monai.losses import FocalLoss

        self.focal = FocalLoss(**kwargs, reduction="none")
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        keep = target != self.ignore_index
        clean = torch.where(keep, target, torch.zeros_like(target))
        loss = self.focal(logits, clean) * keep
        if self.reduction == "sum":
            return loss.sum()
        if self.reduction == "none":
            return loss
        return loss.sum() / (keep.sum() * loss.shape[1]).clamp(min=1)


def build_loss(cfg: ComponentConfig, ignore_value: int | None) -> nn.Module:
    """The configured loss.

    Args:
        cfg: ``train.loss`` (a MONAI loss or one of medseg's, with its arguments).
        ignore_value: label value whose voxels no loss term sees.

    Returns:
        A loss module called with logits and the integer label map of shape (B, 1, *spatial).

    Raises:
        ConfigError: an unknown loss name.
    """
    from monai.losses import DiceLoss

    args = loss_args(cfg)
    cls = loss_class(cfg.name)
    if ignore_value is None:
        return cls(**args)
    if cfg.name == "Focal":
        return MaskedFocalLoss(ignore_value, **{k: v for k, v in args.items() if k != "ignore_index"})
    if "ignore_index" in inspect.signature(cls).parameters:
        return cls(**{**args, "ignore_index": ignore_value})
    weight = args.get("weight")
    dice_weight = (
        weight[1:]
        if weight is not None and cfg.name == "DiceCE" and not args["include_background"]
        else weight
    )
    dice = DiceLoss(**_subset(DiceLoss, args), weight=dice_weight, ignore_index=ignore_value)
    pixel: nn.Module
    if cfg.name == "DiceCE":
        pixel = nn.CrossEntropyLoss(
            weight=None if weight is None else torch.as_tensor(weight, dtype=torch.float32),
            reduction=args["reduction"],
            ignore_index=ignore_value,
            label_smoothing=args["label_smoothing"],
        )
        lambda_pixel = args["lambda_ce"]
    else:  # DiceFocal: MONAI's focal term is per-channel sigmoid focal, with the same weight as Dice
        keys = ("include_background", "gamma", "alpha", "weight", "reduction")
        pixel = MaskedFocalLoss(ignore_value, **{k: args[k] for k in keys}, to_onehot_y=True)
        lambda_pixel = args["lambda_focal"]
    return DiceWithPixelLoss(dice, pixel, args["lambda_dice"], lambda_pixel)


def training_loss(cfg: PipelineConfig) -> nn.Module:
    """The loss training minimises: ``train.loss``, over every output of a deep-supervised network.

    A DynUNet with ``deep_supervision`` returns, in training, its full-resolution output and the
    upsampled outputs of ``deep_supr_num`` lower decoder levels; the loss is their weighted sum,
    weights halving level by level (nnU-Net's scheme, MONAI's ``DeepSupervisionLoss``).

    Args:
        cfg: the resolved configuration.

    Returns:
        A loss called with the network's training output and the label map.
    """
    loss = build_loss(cfg.train.loss, cfg.data.ignore_value)
    if cfg.model.name == "DynUNet" and cfg.model.args.get("deep_supervision"):
        from monai.losses import DeepSupervisionLoss

        return DeepSupervisionLoss(loss, weight_mode="exp")  # type: ignore[arg-type]
    return loss


def _subset(cls: Any, args: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    return {k: v for k, v in args.items() if k in params and k not in ("weight", "ignore_index")}
