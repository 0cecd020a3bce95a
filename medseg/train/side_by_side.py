"""Training step options side by side, so that their speed and their loss compare.

Every option trains its own network from the same initial weights on the same batches: the loader
is shared, and before each option's epoch the random states of augmentation and shuffling are put
back where that option's previous epoch left them (:mod:`medseg.train.rng`), so each option draws
what a run of it alone would. Timed epochs of the options alternate, so that a slow spell of a
shared machine falls on all; each records its seconds per step and the share of the cores the
process got while it ran (its CPU seconds over wall seconds times the threads).

Example:
    >>> runs = SideBySide(cfg, torch.device("cpu"), loader)  # doctest: +SKIP
    >>> ref = runs.add(StepOptions()); other = runs.add(StepOptions(channels_last=True))  # doctest: +SKIP
    >>> runs.rounds([ref, other], 5); ref.median, other.median, other.losses[-1]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.registry import build_inferer
from medseg.train import rng
from medseg.train.distributed import DistInfo
from medseg.train.epoch import EpochContext, train_epoch
from medseg.train.losses import training_loss
from medseg.train.state import TrainState, new_state
from medseg.train.step_options import StepOptions, trained_module

SEED = 0  # the initial weights every option starts from


def cpu_seconds() -> float:
    """CPU seconds this process has used, every thread counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class OptionRun:
    """One option's network and what its epochs measured.

    Attributes:
        options: the step options.
        state: its network, optimiser and scaler.
        ctx: its epoch context.
        random: the random states its next epoch starts from.
        first_seconds: its first epoch (compilation included), not timed as a round.
        seconds: seconds per step of each timed epoch.
        shares: the share of the cores the process got in each timed epoch.
        losses: mean training loss of every epoch, the first included.
        failed: why its training stopped (a non-finite loss), or empty.
    """

    options: StepOptions
    state: TrainState
    ctx: EpochContext
    random: dict[str, Any]
    first_seconds: float = 0.0
    seconds: list[float] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    failed: str = ""

    @property
    def median(self) -> float:
        """Median seconds per step over the timed epochs."""
        return float(statistics.median(self.seconds)) if self.seconds else math.nan


class SideBySide:
    """Options trained side by side on one loader (see the module's note).

    Args:
        cfg: the configuration every option shares but for its step options.
        device: where they train.
        loader: the training loader they share.
    """

    def __init__(self, cfg: PipelineConfig, device: torch.device, loader: Any) -> None:
        self.cfg, self.device, self.loader = cfg, device, loader
        self.chain = getattr(getattr(loader, "dataset", None), "transform", None)
        self.generator = getattr(loader, "generator", None)
        self.start = rng.capture(self.chain, self.generator)
        self.steps = max(1, len(loader))
        self.threads = max(1, torch.get_num_threads())

    def add(self, options: StepOptions) -> OptionRun:
        """A network for ``options`` from the shared initial weights, trained one first epoch."""
        torch.manual_seed(SEED)
        state = new_state(self.cfg, self.device, options)
        ctx = EpochContext(
            trained_module(state.model, options),
            training_loss(self.cfg).to(self.device),
            self.device,
            options,
            DistInfo(),
            build_inferer(self.cfg.infer, self.cfg.roi_size),
            eager=state.model if options.compile else None,
        )
        run = OptionRun(options, state, ctx, self.start)
        t0 = time.perf_counter()
        run.losses.append(self._epoch(run))
        run.first_seconds = time.perf_counter() - t0
        return run

    def rounds(self, runs: list[OptionRun], n: int) -> None:
        """``n`` timed epochs of each run, alternating; a run whose loss turns non-finite stops
        (``failed`` says why)."""
        for _ in range(n):
            for run in [r for r in runs if not r.failed]:
                cpu0, t0 = cpu_seconds(), time.perf_counter()
                try:
                    run.losses.append(self._epoch(run))
                except MedsegError as err:
                    run.failed = str(err)
                    continue
                wall = time.perf_counter() - t0
                run.seconds.append(wall / self.steps)
                run.shares.append((cpu_seconds() - cpu0) / (wall * self.threads))

    def _epoch(self, run: OptionRun) -> float:
        rng.restore(run.random, self.chain, self.generator)
        loss = train_epoch(run.ctx, run.state, self.loader, "calibration", 1)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        run.random = rng.capture(self.chain, self.generator)
        return loss
