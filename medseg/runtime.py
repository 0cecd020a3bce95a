"""Where and how computation runs: the cores, the device, seeds, deterministic algorithms."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from medseg.errors import MedsegError


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pick_device(setting: str) -> torch.device:
    """``cuda`` when asked for or (``auto``) when visible, else the CPU.

    Raises:
        MedsegError: ``cuda`` asked for but no CUDA device is visible.
    """
    if setting == "cuda" and not torch.cuda.is_available():
        raise MedsegError("train.device: cuda asked for but no CUDA device is visible; use auto or cpu")
    if setting == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_determinism(on: bool, device: torch.device) -> None:
    """Deterministic algorithms (and no cuDNN autotuning) when ``on``; autotuned cuDNN otherwise."""
    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = device.type == "cuda" and not on
