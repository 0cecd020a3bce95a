"""Sliding-window inference at the training resolution, probabilities returned at the original size.

The image (already read and preprocessed at its original size) is resized to
``transforms.spatial_size``, run through MONAI's ``SlidingWindowInferer`` (Gaussian weighting by
default), turned into softmax probabilities, and those are resized back bilinearly. Only then is
the argmax taken, so no label is ever interpolated.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medseg.config import PipelineConfig


def make_inferer(cfg: PipelineConfig) -> Any:
    from monai.inferers import SlidingWindowInferer

    return SlidingWindowInferer(
        roi_size=cfg.roi_size,
        sw_batch_size=cfg.infer.sw_batch_size,
        overlap=cfg.infer.overlap,
        mode=cfg.infer.mode,
    )


def predict_probabilities(
    models: list[nn.Module], image: torch.Tensor, cfg: PipelineConfig, inferer: Any, device: torch.device
) -> torch.Tensor:
    """Mean softmax of ``models`` for one image (C, *spatial) -> (num_classes, *spatial), original size."""
    import torch.nn.functional as F

    spatial = tuple(image.shape[1:])
    x = torch.as_tensor(image, dtype=torch.float32)[None].to(device)
    size = tuple(cfg.transforms.spatial_size)
    interp = "bilinear" if len(size) == 2 else "trilinear"
    if spatial != size:
        x = F.interpolate(x, size=size, mode=interp, align_corners=False)
    amp = cfg.train.amp and device.type == "cuda"
    probs = None
    with torch.no_grad(), torch.autocast(device.type, enabled=amp):
        for model in models:
            model.eval()
            p = torch.softmax(inferer(x, model).float(), dim=1)
            probs = p if probs is None else probs + p
    assert probs is not None
    probs = probs / len(models)
    if spatial != size:
        probs = F.interpolate(probs, size=spatial, mode=interp, align_corners=False)
    return probs[0].cpu()


def predict_label(
    models: list[nn.Module], image: torch.Tensor, cfg: PipelineConfig, inferer: Any, device: torch.device
) -> torch.Tensor:
    """Integer label map (spatial) at the image's original size."""
    return predict_probabilities(models, image, cfg, inferer, device).argmax(0)
