"""Where and how computation runs: the cores, the device, seeds, deterministic algorithms, precision."""

from __future__ import annotations

import os
import random
from pathlib import Path

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


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16`` among its flags);
    without them bf16 is emulated in float32 and slower than float32 itself."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    lines = text.splitlines()
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, amp: bool, device: torch.device) -> torch.dtype | None:
    """The dtype autocast runs the network in, or None for float32.

    Args:
        precision: ``train.precision``, the CPU's: ``fp32``, ``bf16``, or ``auto`` (bf16 where the
            CPU has it natively, see :func:`native_bf16`).
        amp: ``train.amp``, CUDA's: float16 autocast (with gradient scaling in training).
        device: where the network runs.

    Example:
        >>> autocast_dtype("bf16", True, torch.device("cpu"))
        torch.bfloat16
        >>> autocast_dtype("bf16", False, torch.device("cuda")) is None
        True
    """
    if device.type == "cuda":
        return torch.float16 if amp else None
    if precision == "bf16" or (precision == "auto" and native_bf16()):
        return torch.bfloat16
    return None
