"""Fit a study into a time budget: candidates from finest to coarsest, a wall-time model fed by
measured seconds per step, and the first candidate that trains enough epochs in the budget.

Candidates lower the resolution (2D: a smaller picture; 3D: a coarser spacing) and, at each
resolution, try smaller networks. Each network is measured once on the device; candidates are
predicted from that measurement in proportion to their voxels per step, and the chosen one is
measured again to confirm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCALES = tuple(round(0.85**i, 4) for i in range(14))  # 1.0 down to 0.12, each 15% below the last
# networks from largest to smallest: DynUNet (nnU-Net's plain U-Net) at 32 and 16 base features,
# then MONAI's UNet (strided convolutions, residual units) at 16, about 4x cheaper per step
NETWORKS = (("DynUNet", 32), ("DynUNet", 16), ("UNet", 16))
# fewer than this, and the plan takes a smaller candidate: on PH2 at a 30-minute budget, 48 epochs
# at 192x256 beat 42 at the same grid by 0.0035 Dice (3.5 standard errors) and 60 at 192x256 beat
# 43 at 224x320 (benchmarks/RESULTS.md): below about 50 epochs, epochs are worth more than a finer grid
MIN_EPOCHS = 48
MAX_EPOCHS = 1000  # nnU-Net's schedule; a larger budget is not spent
MARGIN = 0.9  # of the budget planned, for what the model leaves out (reports, MLflow, noise)
FOLDS = 5


@dataclass(frozen=True)
class Shares:
    """Cases per fold: trained on, watched for early stopping, held out."""

    fit: int
    val: int
    test: int

    @classmethod
    def of(cls, n_cases: int, folds: int = FOLDS, val_fraction: float = 0.1) -> Shares:
        test = math.ceil(n_cases / folds)
        train = n_cases - test
        val = max(1, round(train * val_fraction)) if val_fraction > 0 else 0
        return cls(train - val, val, test)


@dataclass(frozen=True)
class Workload:
    """What a study's wall time depends on besides its epochs.

    ``step``, ``val_case`` and ``load`` are measured seconds: one training step of ``batch``
    patches, one validation case, one case read and preprocessed; ``per_image`` patches are drawn
    from each training case per epoch. ``members`` inferences run per held-out case: one, and one
    per spatial axis flipped for the uncertainty score (``evaluate.uncertainty``), each counted
    by its share of the prediction's windows (``infer.score_overlap``).
    """

    n_cases: int
    folds: int
    batch: int
    per_image: int
    step: float
    val_case: float
    load: float
    val_fraction: float = 0.1
    members: float = 1.0

    @property
    def shares(self) -> Shares:
        return Shares.of(self.n_cases, self.folds, self.val_fraction)

    def epoch_seconds(self) -> float:
        """One epoch of one fold: its training steps and its validation cases."""
        sh = self.shares
        return math.ceil(sh.fit * self.per_image / self.batch) * self.step + sh.val * self.val_case

    def fold_seconds(self, epochs: int) -> float:
        """Wall seconds of one fold: caching, ``epochs`` epochs, held-out prediction (a validation
        case per member, one more for writing and scoring, and a read for the overlay)."""
        sh = self.shares
        cache = (sh.fit + sh.val + sh.test) * self.load
        held_out = sh.test * ((1 + self.members) * self.val_case + self.load)
        return cache + epochs * self.epoch_seconds() + held_out

    def study_seconds(self, epochs: int) -> float:
        """Wall seconds of the whole study: ingest and statistics (one read per case) and the folds."""
        return self.n_cases * self.load + self.folds * self.fold_seconds(epochs)

    def epochs_within(self, budget: float) -> int:
        """The most epochs (at most 1000) whose study fits ``MARGIN`` of ``budget`` seconds; 0 if none."""
        spare = budget * MARGIN - self.study_seconds(0)
        return max(0, min(MAX_EPOCHS, int(spare / (self.folds * self.epoch_seconds()))))

    def smallest_budget(self) -> int:
        """The smallest budget in whole minutes, as seconds, in which the study trains
        ``MIN_EPOCHS`` epochs per fold within ``MARGIN`` of it."""
        minutes = max(1, math.ceil(self.study_seconds(MIN_EPOCHS) / MARGIN / 60))
        while self.epochs_within(minutes * 60) < MIN_EPOCHS:  # the epoch count is rounded down
            minutes += 1
        return minutes * 60


def shown(seconds: float) -> str:
    """A budget as the user would type it.

    Example:
        >>> shown(5.0), shown(1800.0), shown(7200.0)
        ('5s', '30m', '2h')
    """
    if seconds < 60:
        return f"{seconds:g}s"
    return f"{seconds / 3600:g}h" if seconds % 3600 == 0 else f"{seconds / 60:g}m"
