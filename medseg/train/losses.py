"""Losses from the registry, with an ignore value masked out of every term.

MONAI's DiceLoss, TverskyLoss and FocalLoss take ``ignore_index`` themselves; its compound
DiceCE and DiceFocal losses do not, so with an ignore value they are built as the same weighted sum
of MONAI's DiceLoss and a cross-entropy (torch) or focal (MONAI) term, each masking the value.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from medseg.config import ComponentConfig
from medseg.registry import loss_args, loss_class


class DiceWithPixelLoss(nn.Module):
    """``lambda_dice * Dice + lambda_pixel * pixel_term`` where both terms skip ``ignore_index`` pixels."""

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
        return self.lambda_dice * dice + self.lambda_pixel * pixel  # type: ignore[no-any-return]


def build_loss(cfg: ComponentConfig, ignore_value: int | None) -> nn.Module:
    """The configured loss; ``target`` is the integer label map of shape (B, 1, *spatial)."""
    from monai.losses import DiceLoss, FocalLoss

    args = loss_args(cfg)
    cls = loss_class(cfg.name)
    if ignore_value is None:
        return cls(**args)  # type: ignore[no-any-return]
    if "ignore_index" in inspect.signature(cls).parameters:
        return cls(**{**args, "ignore_index": ignore_value})  # type: ignore[no-any-return]
    dice = DiceLoss(**_subset(DiceLoss, args), ignore_index=ignore_value)
    pixel: nn.Module
    if cfg.name == "DiceCE":
        weight = args.get("weight")
        pixel = nn.CrossEntropyLoss(
            weight=None if weight is None else torch.as_tensor(weight, dtype=torch.float32),
            ignore_index=ignore_value,
            label_smoothing=args.get("label_smoothing", 0.0),
        )
        lambda_pixel = args["lambda_ce"]
    else:
        focal_args = {k: args[k] for k in ("include_background", "gamma", "alpha", "weight") if k in args}
        pixel = FocalLoss(**focal_args, to_onehot_y=True, use_softmax=True, ignore_index=ignore_value)
        lambda_pixel = args["lambda_focal"]
    return DiceWithPixelLoss(dice, pixel, args["lambda_dice"], lambda_pixel)


def _subset(cls: Any, args: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    return {k: v for k, v in args.items() if k in params and k not in ("weight", "ignore_index")}
