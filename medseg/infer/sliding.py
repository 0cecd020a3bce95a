"""Sliding-window inference on the model grid, probabilities returned on the reference grid.

The image (read and preprocessed on its reference grid) is brought to the model grid: resized to
``transforms.spatial_size``, or resampled to ``transforms.spacing`` with the same rounding rule as
training. MONAI's ``SlidingWindowInferer`` (Gaussian weighting by default, ``infer.overlap``) runs
every model, and with ``infer.tta_flips`` every flip of the spatial axes of the input (flipped
back after); softmax probabilities are averaged over models and flips and resized back
(bi/trilinear). Only then is the argmax taken, so no label is ever interpolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medseg.config.models import PipelineConfig
from medseg.infer.postprocess import postprocess
from medseg.transforms.resample import grid_size, linear_mode


def model_grid(cfg: PipelineConfig, shape: Sequence[int], spacing: Sequence[float] | None) -> tuple[int, ...]:
    """Size of the model grid for a reference grid of ``shape`` and ``spacing``."""

    t = cfg.transforms
    if t.spatial_size is not None:
        return tuple(t.spatial_size)
    if t.spacing is not None:
        return grid_size(shape, spacing if spacing is not None else [1.0] * len(shape), t.spacing)
    return tuple(shape)


def image_spacing(image: Any) -> list[float] | None:
    """Spacing recorded in a MetaTensor's meta data, or None."""
    meta = getattr(image, "meta", None) or {}
    spacing = meta.get("spacing")
    return None if spacing is None else [float(s) for s in torch.as_tensor(spacing).flatten()]


def flip_sets(spatial_dims: int, on: bool) -> list[tuple[int, ...]]:
    """Tensor dims (of N, C, *spatial) to flip: none, or every subset of the spatial axes."""
    from itertools import combinations

    axes = range(2, 2 + spatial_dims)
    if not on:
        return [()]
    return [c for n in range(spatial_dims + 1) for c in combinations(axes, n)]


def predict_probabilities(
    models: list[nn.Module],
    image: torch.Tensor,
    cfg: PipelineConfig,
    inferer: Any,
    device: torch.device,
    on_device: bool = False,
) -> torch.Tensor:
    """Mean softmax of ``models`` for one image, on its reference grid.

    Args:
        models: the fold models, in eval mode on ``device``.
        image: (C, *spatial) on the reference grid.
        cfg: the training configuration (model grid, flips).
        inferer: the sliding-window inferer.
        device: where the models run.
        on_device: leave the result on ``device`` instead of moving it to the CPU.

    Returns:
        (num_classes, *spatial) probabilities.
    """
    import torch.nn.functional as F

    spatial = tuple(image.shape[1:])
    size = model_grid(cfg, spatial, image_spacing(image))
    x = torch.as_tensor(image, dtype=torch.float32).as_subclass(torch.Tensor)[None].to(device)
    interp = linear_mode(len(spatial))
    if spatial != size:
        x = F.interpolate(x, size=size, mode=interp, align_corners=False)
    amp = cfg.train.amp and device.type == "cuda"
    probs = None
    flips = flip_sets(len(spatial), cfg.infer.tta_flips)
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        for model in models:
            model.eval()
            for dims in flips:
                xi = x.flip(dims) if dims else x
                p = torch.softmax(inferer(xi, model).float(), dim=1)
                p = p.flip(dims) if dims else p
                probs = p if probs is None else probs + p
    assert probs is not None
    probs = probs / (len(models) * len(flips))
    if spatial != size:
        probs = F.interpolate(probs, size=spatial, mode=interp, align_corners=False)
    return probs[0] if on_device else probs[0].cpu()


def class_argmax(probs: torch.Tensor) -> torch.Tensor:
    """``probs.argmax(0)`` (ties to the lower class). On the CPU a running maximum over the classes,
    several times faster than ``argmax`` over the outer dimension of a large volume."""
    if probs.device.type != "cpu" or probs.shape[0] > 16:
        return probs.argmax(0)
    best = probs[0].clone()
    index = torch.zeros(probs.shape[1:], dtype=torch.int64)
    for c in range(1, probs.shape[0]):
        index.masked_fill_(probs[c] > best, c)
        torch.maximum(best, probs[c], out=best)
    return index


def predict_label(
    models: list[nn.Module], image: torch.Tensor, cfg: PipelineConfig, inferer: Any, device: torch.device
) -> torch.Tensor:
    """Integer label map on the image's reference grid, post-processed as configured.

    Args:
        models: the fold models, in eval mode on ``device``.
        image: (C, *spatial) on the reference grid.
        cfg: the training configuration.
        inferer: the sliding-window inferer.
        device: where the models run.

    Returns:
        The spatial label map on the CPU.
    """

    probs = predict_probabilities(models, image, cfg, inferer, device, on_device=True)
    return postprocess(class_argmax(probs).cpu(), cfg)
