"""Sliding-window inference on the model grid, probabilities returned on the reference grid.

The image (read and preprocessed on its reference grid) is brought to the model grid: resized to
``transforms.spatial_size``, or resampled to ``transforms.spacing`` with the same rounding rule as
training. MONAI's ``SlidingWindowInferer`` (Gaussian weighting by default, ``infer.overlap``) runs
every model, and with ``infer.tta_flips`` every flip of the spatial axes of the input (flipped
back after); softmax probabilities are averaged over models and flips and resized back
(bi/trilinear). Only then is the argmax taken, so no label is ever interpolated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from medseg.config.models import PipelineConfig
from medseg.infer.postprocess import postprocess
from medseg.runtime import autocast_dtype
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


def axis_flips(spatial_dims: int) -> list[tuple[int, ...]]:
    """No flip and each spatial axis flipped alone: the members of the held-out uncertainty score."""
    return [(), *((d,) for d in range(2, 2 + spatial_dims))]


def window_count(size: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Sliding windows over a grid of ``size`` (MONAI's scan: steps of ``roi * (1 - overlap)``).

    Example:
        >>> window_count((96, 96, 40), (64, 64, 32), 0.25)
        8
    """
    import math

    count = 1
    for n, r in zip(size, roi, strict=True):
        if n > r:
            step = max(int(r * (1 - overlap)), 1)
            count *= math.ceil((n - r) / step) + 1
    return count


def predict_scored(
    models: list[nn.Module],
    image: torch.Tensor,
    cfg: PipelineConfig,
    inferer: Any,
    device: torch.device,
    on_device: bool = False,
    score_flips: bool = False,
    progress: Callable[[float], None] | None = None,
) -> tuple[torch.Tensor, float]:
    """Mean softmax of ``models`` (and flips when ``infer.tta_flips``) and the members' disagreement.

    Args:
        models: the fold models, in eval mode on ``device``.
        image: (C, *spatial) on the reference grid.
        cfg: the training configuration (model grid, flips).
        inferer: the sliding-window inferer.
        device: where the models run.
        on_device: leave the probabilities on ``device`` instead of moving them to the CPU.
        score_flips: also run each single-axis flip (:func:`axis_flips`) for the score alone,
            when ``infer.tta_flips`` is off; the probabilities stay those of the configured members.
        progress: called with the fraction of sliding windows done, after each batch of windows.

    Returns:
        (num_classes, *spatial) probabilities, and the disagreement of every member run
        (:func:`medseg.infer.uncertainty.disagreement` on the model grid; NaN for one member).
    """
    import math

    import torch.nn.functional as F

    from medseg.infer.uncertainty import disagreement

    spatial = tuple(image.shape[1:])
    size = model_grid(cfg, spatial, image_spacing(image))
    x = torch.as_tensor(image, dtype=torch.float32).as_subclass(torch.Tensor)[None].to(device)
    interp = linear_mode(len(spatial))
    if spatial != size:
        x = F.interpolate(x, size=size, mode=interp, align_corners=False)
    averaged = flip_sets(len(spatial), cfg.infer.tta_flips)
    scored = averaged + [f for f in axis_flips(len(spatial)) if score_flips and f not in averaged]
    dtype = autocast_dtype(cfg.train.precision, cfg.train.amp, device)  # CUDA: amp; CPU: precision
    probs, extra, labels = None, None, []
    scoring = len(models) * len(scored) > 1  # one member: no disagreement to measure
    total = window_count(size, cfg.roi_size, cfg.infer.overlap) * len(models) * len(scored)
    done = [0]

    def counted(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(window: torch.Tensor) -> torch.Tensor:
            out = model(window)
            out = out.float() if out.dtype == torch.bfloat16 else out  # windows blend in float32
            done[0] += window.shape[0]
            if progress is not None:
                progress(min(1.0, done[0] / total))
            return out

        return run

    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for model in models:
            model.eval()
            for dims in scored:
                xi = x.flip(dims) if dims else x
                p = torch.softmax(inferer(xi, counted(model)).float(), dim=1)
                p = p.flip(dims) if dims else p
                if scoring:
                    labels.append(class_argmax(p[0]).to(torch.uint8))
                if dims in averaged:
                    probs = p if probs is None else probs + p
                else:  # scored only: flips run for the uncertainty score
                    extra = p if extra is None else extra + p
    assert probs is not None
    score = math.nan
    if scoring:
        every = probs if extra is None else probs + extra
        score = disagreement(labels, class_argmax(every[0]).to(torch.uint8), probs.shape[1])
    probs = probs / (len(models) * len(averaged))
    if spatial != size:
        probs = F.interpolate(probs, size=spatial, mode=interp, align_corners=False)
    return (probs[0] if on_device else probs[0].cpu()), score


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


def predict_label_scored(
    models: list[nn.Module],
    image: torch.Tensor,
    cfg: PipelineConfig,
    inferer: Any,
    device: torch.device,
    score_flips: bool = False,
) -> tuple[torch.Tensor, float]:
    """Integer label map on the image's reference grid, post-processed as configured, and the
    members' disagreement (:func:`predict_scored`); the label map on the CPU."""
    probs, score = predict_scored(models, image, cfg, inferer, device, True, score_flips)
    return postprocess(class_argmax(probs).cpu(), cfg), score
