"""How a training step runs: the autocast precision, the memory format and compilation of the network.

``train.amp`` (CUDA: float16 autocast with gradient scaling), ``train.precision`` (CPU: bfloat16
autocast; ``auto`` where the CPU has bf16 natively), ``train.channels_last`` and ``train.compile``
resolve here into :class:`StepOptions`, which :func:`medseg.train.state.new_state` and
:func:`medseg.train.epoch.train_epoch` follow. The network's outputs reach the loss in float32
whatever the precision. Checkpoints always hold the plain module's weights: the compiled wrapper
only trains, and validation runs the plain module.

Example:
    >>> import torch
    >>> StepOptions(torch.bfloat16, channels_last=True).name
    'bf16+channels-last'
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medseg.config.models import TrainConfig
from medseg.errors import MedsegError
from medseg.runtime import autocast_dtype

_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class StepOptions:
    """The resolved options of a training step.

    Attributes:
        dtype: what autocast runs the network in (None: float32 throughout).
        channels_last: weights and batches in the channels-last memory format.
        compile: the network trains through ``torch.compile``.
    """

    dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    @property
    def scaled(self) -> bool:
        """Whether gradients are scaled: float16 only (bfloat16 has float32's exponent range)."""
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        """``bf16`` or ``fp16``, ``channels-last``, ``compile`` joined by ``+``; ``fp32`` for none."""
        flags = [n for n, on in (("channels-last", self.channels_last), ("compile", self.compile)) if on]
        return "+".join(([_NAMES[self.dtype]] if self.dtype else []) + flags) or "fp32"

    def autocast(self, device: torch.device) -> Any:
        """The autocast context of the network's forward pass (disabled in float32)."""
        return torch.autocast(device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format the network trains in."""
        if not self.channels_last or x.dim() not in (4, 5):
            return x
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)

    def settings(self) -> dict[str, Any]:
        """The ``train`` settings that give these options on a CPU."""
        precision = "bf16" if self.dtype == torch.bfloat16 else "fp32"
        return {"precision": precision, "channels_last": self.channels_last, "compile": self.compile}


def step_options(train: TrainConfig, device: torch.device) -> StepOptions:
    """The options ``train`` asks for, resolved for ``device``.

    Raises:
        MedsegError: ``train.compile`` on a CPU without a C++ compiler to build the kernels.
    """
    opts = StepOptions(autocast_dtype(train.precision, train.amp, device), train.channels_last, train.compile)
    if opts.compile and device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise MedsegError(
            "train.compile: torch.compile needs a C++ compiler on a CPU and none (g++, c++, clang++) is "
            "on the PATH; install one or set train.compile: false"
        )
    return opts


def to_memory_format(model: nn.Module, opts: StepOptions, spatial_dims: int) -> nn.Module:
    """``model`` converted in place to channels-last when asked (its parameter objects kept, so an
    optimiser made before or after follows); returned for chaining."""
    if opts.channels_last:
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        model.to(memory_format=fmt)  # type: ignore[call-overload]
    return model


def trained_module(model: nn.Module, opts: StepOptions) -> nn.Module:
    """The module a training step calls: ``model`` itself, or compiled for static shapes (same
    parameters); :meth:`medseg.train.epoch.EpochContext.network` gives batches of another shape to
    ``model`` itself. Later networks of the same settings (the next folds) reuse the compiled code."""
    if not opts.compile:
        return model
    compiled: nn.Module = torch.compile(model, dynamic=False)  # type: ignore[assignment]
    return compiled
