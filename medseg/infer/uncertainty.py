"""How much the members of an ensemble (fold models, test-time flips) disagree on one input.

Each member's argmax is compared with the ensemble's (the argmax of the mean probabilities): the
score is one minus the mean, over members and foreground classes, of their Dice (a class empty in
both counts as full agreement). 0 means every member drew the same segmentation; a case whose
score is high is one a reader should look at. One member gives no score (NaN).

An input gets two such scores (:class:`Scores`): that of its first fold model's test-time flips,
which is what ``medseg run`` measures on every held-out case (one fold model, the same flips), so
the study's review threshold applies to it; and that of the fold models, which cross-validation
cannot measure (each held-out case was a training case of the other folds' models).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Scores:
    """The disagreement scores of one input.

    Attributes:
        flips: of the first model's test-time flips (the held-out score's kind); NaN without flips.
        folds: of the fold models' predictions; NaN for one model.
    """

    flips: float = math.nan
    folds: float = math.nan


def member_dice(member: torch.Tensor, consensus: torch.Tensor, num_classes: int) -> float:
    """Mean Dice over the foreground classes of two label maps (1 for a class empty in both)."""
    scores = []
    for c in range(1, num_classes):
        a, b = member == c, consensus == c
        total = int(a.sum()) + int(b.sum())
        scores.append(1.0 if total == 0 else 2.0 * int((a & b).sum()) / total)
    return sum(scores) / len(scores)


def disagreement(members: list[torch.Tensor], consensus: torch.Tensor, num_classes: int) -> float:
    """One minus the mean Dice of each member's label map against the ensemble's; NaN for one member.

    Example:
        >>> a = torch.zeros(4, 4, dtype=torch.uint8); a[:2] = 1
        >>> b = torch.zeros(4, 4, dtype=torch.uint8); b[:1] = 1
        >>> round(disagreement([a, a], a, 2), 3), round(disagreement([a, b], a, 2), 3)
        (0.0, 0.167)
    """
    if len(members) < 2:
        return math.nan
    return 1.0 - sum(member_dice(m, consensus, num_classes) for m in members) / len(members)
