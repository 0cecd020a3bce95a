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

from medseg.config.models import InferConfig, PipelineConfig, TransformsConfig
from medseg.infer.postprocess import postprocess
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
    amp: bool = False,
    on_device: bool = False,
    score_flips: bool = False,
    progress: Callable[[float], None] | None = None,
) -> tuple[torch.Tensor, float]:
    """Mean softmax of ``models`` (and flips when ``infer.tta_flips``) and the members' disagreement.

    Args:
        models: the fold models, in eval mode on ``device``.
        image: (C, *spatial) on the reference grid.
        transforms: the model grid (``spatial_size`` or ``spacing``) and its input size.
        infer: the window, overlap and flips.
        inferer: the sliding-window inferer.
        device: where the models run.
        amp: mixed precision (CUDA only).
        on_device: leave the probabilities on ``device`` instead of moving them to the CPU.
        score_flips: also run each single-axis flip (:func:`axis_flips`) for the score alone,
            when ``infer.tta_flips`` is off; the probabilities stay those of the configured members.
        progress: called with the fraction of sliding windows done, after each batch of windows.

    Returns:
        (num_classes, *spatial) probabilities, and the disagreement of every member run
        (:func:`medseg.infer.uncertainty.disagreement` on the model grid; NaN for one member).
    """
    import torch.nn.functional as F

    spatial = tuple(image.shape[1:])
    size = model_grid(transforms, spatial, image_spacing(image))
    x = torch.as_tensor(image, dtype=torch.float32).as_subclass(torch.Tensor)[None].to(device)
    interp = linear_mode(len(spatial))
    if spatial != size:
        x = F.interpolate(x, size=size, mode=interp, align_corners=False)
    averaged = flip_sets(len(spatial), infer.tta_flips)
    scored = averaged + [f for f in axis_flips(len(spatial)) if score_flips and f not in averaged]
    roi = infer.roi_size or transforms.input_size
    total = window_count(size, roi, infer.overlap) * len(models) * len(scored)
    runs, counter = _Members(averaged, len(models) * len(scored) > 1), _Progress(total, progress)
    with torch.no_grad(), torch.autocast(device.type, enabled=amp and device.type == "cuda"):
        for model in models:
            model.eval()
            for dims in scored:
                runs.add(dims, _members_run(model, x, dims, inferer, counter.wrap(model)))
    probs, score = runs.result(len(models))
    if spatial != size:
        probs = F.interpolate(probs, size=spatial, mode=interp, align_corners=False)
    return (probs[0] if on_device else probs[0].cpu()), score


class _Progress:
    """Tells ``progress`` the share of the ``total`` windows done, after each batch of any member."""

    def __init__(self, total: int, progress: Callable[[float], None] | None) -> None:
        self.total, self.progress, self.done = total, progress, 0

    def wrap(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(window: torch.Tensor) -> torch.Tensor:
            out = model(window)
            self.done += window.shape[0]
            if self.progress is not None:
                self.progress(min(1.0, self.done / self.total))
            return out

        return run


def _members_run(
    model: nn.Module, x: torch.Tensor, dims: tuple[int, ...], inferer: Any, run: Any
) -> torch.Tensor:
    """Softmax of one member: the model on ``x`` flipped along ``dims``, flipped back."""
    xi = x.flip(dims) if dims else x
    p = torch.softmax(inferer(xi, run).float(), dim=1)
    return p.flip(dims) if dims else p


class _Members:
    """The members' probabilities: those averaged into the prediction, those run for the score
    only, and each member's argmax for the disagreement."""

    def __init__(self, averaged: list[tuple[int, ...]], scoring: bool) -> None:
        self.averaged, self.scoring = averaged, scoring
        self.probs: torch.Tensor | None = None
        self.extra: torch.Tensor | None = None
        self.labels: list[torch.Tensor] = []

    def add(self, dims: tuple[int, ...], p: torch.Tensor) -> None:
        if self.scoring:
            self.labels.append(class_argmax(p[0]).to(torch.uint8))
        if dims in self.averaged:
            self.probs = p if self.probs is None else self.probs + p
        else:  # scored only: flips run for the uncertainty score
            self.extra = p if self.extra is None else self.extra + p

    def result(self, n_models: int) -> tuple[torch.Tensor, float]:
        """(mean probabilities of the averaged members, the disagreement of every member; NaN for one)."""
        import math

        from medseg.infer.uncertainty import disagreement

        assert self.probs is not None
        score = math.nan
        if self.scoring:
            every = self.probs if self.extra is None else self.probs + self.extra
            score = disagreement(self.labels, class_argmax(every[0]).to(torch.uint8), self.probs.shape[1])
        return self.probs / (n_models * len(self.averaged)), score


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
    members' disagreement (:func:`predict_scored`); the label map on the CPU."""
    probs, score = predict_scored(
        models, image, cfg.transforms, cfg.infer, inferer, device, cfg.train.amp, True, score_flips
    )
    return postprocess(class_argmax(probs).cpu(), cfg.infer, cfg.data.num_classes), score
