"""The fold networks of a medseg study side by side, as the one network of a MONAI bundle.

This file is copied into the bundle as ``scripts/fold_stack.py`` and built by MONAI's config parser
(``"_target_": "scripts.fold_stack.FoldStack"``, each fold a MONAI network such as ``UNet``). It
imports torch alone, so the bundle runs where only MONAI is installed; ``ckpt_export`` scripts it
into ``models/model.ts``, which carries the code itself.

The folds' logits are concatenated, not averaged: the sliding-window inferer blends each fold's
logits over overlapping windows, and only then does the bundle's post-processing take each fold's
softmax and their mean, as ``medseg predict`` does (a mean of probabilities blended window by
window would differ where windows overlap).
"""

import torch
from torch import nn


class FoldStack(nn.Module):
    """(N, C_in, *spatial) -> (N, folds x classes, *spatial): the logits of each fold, in fold order.

    Args:
        folds: the fold networks, each mapping (N, C_in, *spatial) to (N, classes, *spatial).

    Example:
        >>> net = FoldStack([nn.Conv2d(1, 3, 1), nn.Conv2d(1, 3, 1)])
        >>> tuple(net(torch.zeros(2, 1, 8, 8)).shape)
        (2, 6, 8, 8)
    """

    def __init__(self, folds: list[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(folds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: list[torch.Tensor] = []
        for fold in self.folds:
            logits.append(fold(x))
        return torch.cat(logits, dim=1)
