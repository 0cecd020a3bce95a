"""The fold models of a study as one network: the mean of their softmax probabilities.

This is what ``medseg predict`` computes for each sliding window (without test-time flips), as a
plain ``nn.Module``, so the ensemble can be logged, registered and served as one MLflow PyTorch
model.
"""

from __future__ import annotations

import torch
from torch import nn


class FoldEnsemble(nn.Module):
    """Mean softmax over the channel axis of the outputs of ``models``.

    Args:
        models: the fold networks, each mapping (N, C, *spatial) to (N, classes, *spatial) logits.

    Example:
        >>> net = FoldEnsemble([nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 1)])
        >>> out = net(torch.zeros(1, 1, 4, 4))
        >>> tuple(out.shape), bool(torch.allclose(out.sum(1), torch.ones(1, 4, 4)))
        ((1, 2, 4, 4), True)
    """

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.folds = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [torch.softmax(model(x).float(), dim=1) for model in self.folds]
        return torch.stack(probs).mean(0)
