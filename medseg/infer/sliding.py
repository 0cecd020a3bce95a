"""Sliding-window inference on the model grid, probabilities returned on the reference grid.

The image (read and preprocessed on its reference grid) is brought to the model grid: resized to
``transforms.spatial_size``, or resampled to ``transforms.spacing`` with the same rounding rule as
training. MONAI's ``SlidingWindowInferer`` (Gaussian weighting by default, ``infer.overlap``) runs
every model, and with ``infer.tta_flips`` every flip of the spatial axes of the input (flipped
back after); softmax probabilities are averaged over models and flips and resized back
(bi/trilinear). Only then is the argmax taken, so no label is ever interpolated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from medseg.config.models import InferConfig, PipelineConfig, TransformsConfig
from medseg.infer.postprocess import postprocess
from medseg.infer.uncertainty import Scores, disagreement
from medseg.registry import build_inferer
from medseg.runtime import autocast_dtype
from medseg.transforms.resample import grid_size, linear_mode


def model_grid(t: TransformsConfig, shape: Sequence[int], spacing: Sequence[float] | None) -> tuple[int, ...]:
    """Size of the model grid (``transforms``' size or spacing) for a reference grid of ``shape``
    and ``spacing``."""
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
    transforms: TransformsConfig,
    infer: InferConfig,
    inferer: Any,
    device: torch.device,
    autocast: torch.dtype | None = None,
    on_device: bool = False,
    score_flips: bool = False,
    progress: Callable[[float], None] | None = None,
) -> tuple[torch.Tensor, Scores]:
    """Mean softmax of ``models`` (and flips when ``infer.tta_flips``) and how much they disagree.

    Args:
        models: the fold models, in eval mode on ``device``.
        image: (C, *spatial) on the reference grid.
        transforms: the model grid (``spatial_size`` or ``spacing``) and its input size.
        infer: the window, overlap and flips.
        inferer: the sliding-window inferer.
        device: where the models run.
        autocast: the dtype the network runs in (``runtime.autocast_dtype``: CUDA's float16 with
            ``train.amp``, the CPU's bfloat16 with ``train.precision``), or None for float32.
        on_device: leave the probabilities on ``device`` instead of moving them to the CPU.
        score_flips: also run the first model on each single-axis flip (:func:`axis_flips`) for
            its flip score alone, when ``infer.tta_flips`` is off (windows overlapping by
            ``infer.score_overlap``).
        progress: called with the fraction of sliding windows done, after each batch of windows.

    Returns:
        (num_classes, *spatial) probabilities, and the :class:`~medseg.infer.uncertainty.Scores`:
        the disagreement of the first model's flips (the held-out score's kind) and of the fold
        models' own predictions, on the model grid.
    """
    import torch.nn.functional as F

    spatial = tuple(image.shape[1:])
    size = model_grid(transforms, spatial, image_spacing(image))
    x = torch.as_tensor(image, dtype=torch.float32).as_subclass(torch.Tensor)[None].to(device)
    interp = linear_mode(len(spatial))
    if spatial != size:
        x = F.interpolate(x, size=size, mode=interp, align_corners=False)
    averaged = flip_sets(len(spatial), infer.tta_flips)
    first = averaged + [f for f in axis_flips(len(spatial)) if score_flips and f not in averaged]
    roi = list(infer.roi_size or transforms.input_size)
    scoring = build_inferer(infer.model_copy(update={"overlap": infer.score_overlap}), roi)
    total = window_count(size, roi, infer.overlap) * len(models) * len(averaged) + window_count(
        size, roi, infer.score_overlap
    ) * (len(first) - len(averaged))
    counter = _Progress(total, progress)
    with torch.no_grad(), torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        probs, scores = _members(models, x, (inferer, scoring), counter.wrap, averaged, first)
    probs = probs / (len(models) * len(averaged))
    if spatial != size:
        probs = F.interpolate(probs, size=spatial, mode=interp, align_corners=False)
    return (probs[0] if on_device else probs[0].cpu()), scores


def _members(
    models: list[nn.Module],
    x: torch.Tensor,
    inferers: tuple[Any, Any],
    counted: Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]],
    averaged: list[tuple[int, ...]],
    first: list[tuple[int, ...]],
) -> tuple[torch.Tensor, Scores]:
    """Every model on its flips (the first model on ``first``, the others on ``averaged``): the sum
    of the averaged members' probabilities, and the scores (:func:`predict_scored`). ``inferers``:
    the prediction's, and the one of the flips run for the score alone (``infer.score_overlap``)."""
    probs, first_sum = None, None
    flip_labels: list[torch.Tensor] = []
    fold_labels: list[torch.Tensor] = []
    for i, model in enumerate(models):
        model.eval()
        own = None
        for dims in first if i == 0 else averaged:
            xi = x.flip(dims) if dims else x
            inferer = inferers[0] if dims in averaged else inferers[1]
            p = torch.softmax(inferer(xi, counted(model)).float(), dim=1)
            p = p.flip(dims) if dims else p
            if i == 0 and len(first) > 1:
                flip_labels.append(class_argmax(p[0]))
                first_sum = p if first_sum is None else first_sum + p
            if dims in averaged:  # otherwise run for the flip score alone
                own = p if own is None else own + p
        assert own is not None
        probs = own if probs is None else probs + own
        if len(models) > 1:
            fold_labels.append(class_argmax(own[0]))
    assert probs is not None
    return probs, _scores(flip_labels, first_sum, fold_labels, probs)


def _scores(
    flip_labels: list[torch.Tensor],
    first_sum: torch.Tensor | None,
    fold_labels: list[torch.Tensor],
    probs: torch.Tensor,
) -> Scores:
    """The members' label maps against their consensus: the first model's flips, the fold models."""
    classes = probs.shape[1]
    flips = math.nan
    if first_sum is not None:
        flips = disagreement(flip_labels, class_argmax(first_sum[0]), classes)
    folds = disagreement(fold_labels, class_argmax(probs[0]), classes) if fold_labels else math.nan
    return Scores(flips, folds)


class _Progress:
    """Tells ``progress`` the share of the ``total`` windows done, after each batch of any member."""

    def __init__(self, total: int, progress: Callable[[float], None] | None) -> None:
        self.total, self.progress, self.done = total, progress, 0

    def wrap(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(window: torch.Tensor) -> torch.Tensor:
            out = model(window)
            out = out.float() if out.dtype == torch.bfloat16 else out  # windows blend in float32
            self.done += window.shape[0]
            if self.progress is not None:
                self.progress(min(1.0, self.done / self.total))
            return out

        return run


def class_argmax(probs: torch.Tensor) -> torch.Tensor:
    """``probs.argmax(0)`` (ties to the lower class) as a label map in its own dtype: uint8 class
    indices up to 256 classes (an eighth of argmax's int64: 48 MB rather than 384 MB for an
    8000x6000 picture), int64 beyond. On the CPU a running maximum over the classes (two classes:
    one comparison), several times faster than ``argmax`` over the outer dimension of a volume.

    Example:
        >>> class_argmax(torch.tensor([[0.2, 0.5, 0.6], [0.8, 0.5, 0.4]])).tolist()
        [1, 0, 0]
    """
    dtype = torch.uint8 if probs.shape[0] <= 256 else torch.int64
    if probs.device.type != "cpu" or probs.shape[0] > 16:
        return probs.argmax(0).to(dtype)
    if probs.shape[0] == 2:
        return (probs[1] > probs[0]).to(dtype)
    best = probs[0].clone()
    index = torch.zeros(probs.shape[1:], dtype=dtype)
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
    disagreement of the first model's flips (:func:`predict_scored`); the label map on the CPU."""
    probs, scores = predict_scored(
        models,
        image,
        cfg.transforms,
        cfg.infer,
        inferer,
        device,
        autocast_dtype(cfg.train.precision, cfg.train.amp, device),
        True,
        score_flips,
    )
    return postprocess(class_argmax(probs).cpu(), cfg.infer, cfg.data.num_classes), scores.flips
