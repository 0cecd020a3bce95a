"""Measure a candidate plan on the device: a few real training steps and validation cases.

The steps run the study's own loaders (reading, preprocessing, augmentation), network, loss and
optimiser, so seconds per step include what a run pays; the first epoch warms up and is not
counted. Peak memory is measured over that first epoch, when gradients and optimiser state are
allocated: all that CUDA's allocator held at its peak on a GPU (weights included, as the device
must hold them), and on a CPU the rise of the process's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) over its resident set before the epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.io.case import Case

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measured:
    """What one candidate costs on the device.

    Attributes:
        seconds_per_step: one training step (batch loaded, augmented, forward, backward, update).
        seconds_per_val_case: one whole validation image or volume through the sliding window.
        seconds_per_load: reading and preprocessing one case into the cache.
        peak_bytes: memory training takes at its peak (see the module's note).
    """

    seconds_per_step: float
    seconds_per_val_case: float
    seconds_per_load: float
    peak_bytes: int


def _rss_peak_reset() -> int:
    """The process's resident memory now, after resetting its high-water mark (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmRSS")
    except OSError:
        return 0


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(cfg: PipelineConfig, cases: list[Case], steps: int = 3) -> Measured:
    """Run ``steps`` training steps (after one warm-up epoch) and two validation cases.

    Args:
        cfg: the candidate plan, bound.
        cases: usable cases (as ingest lists them); a few are used.
        steps: training steps measured.

    Returns:
        The measured costs.

    Raises:
        MedsegError: the device runs out of memory (named, with the batch and patch).
    """
    from medseg.registry import build_inferer
    from medseg.runtime import pick_device
    from medseg.train.distributed import DistInfo
    from medseg.train.epoch import EpochContext, train_epoch, validation_dice
    from medseg.train.loaders import make_loaders
    from medseg.train.losses import training_loss
    from medseg.train.state import new_state

    device = pick_device(cfg.train.device)
    batch = cfg.train.batch_size
    per_image = (
        cfg.transforms.patches_per_image
        if cfg.transforms.patch_size and cfg.transforms.spatial_dims == 3
        else 1
    )
    n_fit = max(1, min(len(cases) - 2, -(-batch * steps // per_image)))
    fit, val = cases[:n_fit], cases[n_fit : n_fit + 2]
    t0 = time.perf_counter()
    train_loader, val_loader = make_loaders(cfg, fit, val, seed=0, device=device)
    load = (time.perf_counter() - t0) / (len(fit) + len(val))
    amp = cfg.train.amp and device.type == "cuda"
    state = new_state(cfg, device, amp)
    ctx = EpochContext(
        state.model,
        training_loss(cfg).to(device),
        device,
        amp,
        DistInfo(),
        build_inferer(cfg.infer, cfg.roi_size),
    )
    try:
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = 0 if device.type == "cuda" else _rss_peak_reset()
        train_epoch(ctx, state, train_loader, "calibration", 1)  # warm-up; its peak is measured
        peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else _status("VmHWM")) - before
        t0 = time.perf_counter()
        train_epoch(ctx, state, train_loader, "calibration", 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        step = (time.perf_counter() - t0) / max(1, len(train_loader))
        t0 = time.perf_counter()
        if val_loader is not None:
            validation_dice(state.model, val_loader, ctx, cfg.data.num_classes, cfg.data.ignore_value)
        per_val = (time.perf_counter() - t0) / max(1, len(val))
    except torch.OutOfMemoryError:
        raise MedsegError(
            f"calibration: batch {batch} of {cfg.transforms.patch_size or cfg.transforms.spatial_size} "
            "does not fit "
            f"the {device} memory; give a smaller --gpu-memory"
        ) from None
    log.info("calibration: %.3f s/step, %.3f s/validation case, %.1f MB peak", step, per_val, peak / 2**20)
    return Measured(step, per_val, load, max(0, int(peak)))
