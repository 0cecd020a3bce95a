"""Whole transform chains of a resolved configuration, keyed on ``image`` and ``label``.

Order, the same for training, validation and inference so that every stage sees the same image:

1. read (:class:`~medseg.transforms.loader.LoadCased`: PNG/JPEG scaled to [0, 1], DICOM and NIfTI
   as stored, CT in HU, volumes in the RAS+ frame) and turn label values into classes
   (``data.labels`` picks and renumbers classes);
2. mammography geometry when ``data.mammography`` is set (flip, breast crop, size cap);
3. ``transforms.preprocess`` (intensity: CT windows, clip-and-z-score, z-score).
   This is the *reference grid*: held-out predictions and metrics live here;
4. the *model grid*: resize to ``transforms.spatial_size`` (image bilinear, label nearest-exact) or
   resample to ``transforms.spacing``; pad to ``transforms.patch_size``;
5. training only: random patches (``RandCropByPosNegLabeld``, foreground/background balanced) and
   ``transforms.train`` augmentation; 6. label cast to int64.

MONAI dictionary transforms draw one random state per call and apply it to every key, so image and
label move together; CacheDataset caches everything before the first random transform.
"""

from __future__ import annotations

from typing import Any

import torch

from medseg.config.models import DataConfig, TransformsConfig
from medseg.registry import build_chain
from medseg.transforms.keys import IMAGE_KEY, KEYS
from medseg.transforms.steps import finish_transforms, grid_transforms, load_transforms, patch_transforms
from medseg.transforms.untracked import untracked_from_first_random


def read_transforms(data: DataConfig, transforms: TransformsConfig, with_label: bool = True) -> list[Any]:
    """Steps 1-3 of every chain: read, the reference grid, intensities prepared.

    Args:
        data: the ``data`` section (channels, labels, mammography).
        transforms: the ``transforms`` section.
        with_label: also read and align the ``label`` key (False for inference on images alone).

    Returns:
        MONAI dictionary transforms, in order.
    """
    return load_transforms(data, transforms, with_label) + build_chain(transforms.preprocess, "preprocess")


def _to_device(device: torch.device | None) -> list[Any]:
    """Where the model grid moves to the GPU (and is cached there), or nothing."""
    from monai.transforms import EnsureTyped

    return [] if device is None else [EnsureTyped(KEYS, device=device, track_meta=False)]


def train_transforms(
    data: DataConfig, transforms: TransformsConfig, device: torch.device | None = None
) -> Any:
    """The training chain: reference grid, model grid, patches and ``transforms.train`` augmentation.

    Args:
        data: the ``data`` section.
        transforms: the ``transforms`` section.
        device: move the model grid there before the random transforms (MONAI's fast-training
            recipe: the cache then lives on that device, and augmentation runs there).

    Returns:
        A ``monai.transforms.Compose`` whose random draws are shared by ``image`` and ``label``;
        from the first random step on, on plain tensors (:class:`~medseg.transforms.untracked.Untracked`).
    """
    from monai.transforms import Compose

    random_part = patch_transforms(transforms) + build_chain(transforms.train, "train") + finish_transforms()
    fixed = read_transforms(data, transforms) + grid_transforms(transforms, KEYS) + _to_device(device)
    return Compose(fixed + untracked_from_first_random(random_part))


def eval_transforms(
    data: DataConfig, transforms: TransformsConfig, device: torch.device | None = None
) -> Any:
    """The validation chain during training: whole images on the model grid, no augmentation.

    Args:
        data: the ``data`` section.
        transforms: the ``transforms`` section.
        device: cache the images on that device.

    Returns:
        A ``monai.transforms.Compose``.
    """
    from monai.transforms import Compose

    chain = read_transforms(data, transforms) + grid_transforms(transforms, KEYS) + _to_device(device)
    return Compose(chain + finish_transforms())


def original_size_transforms(data: DataConfig, transforms: TransformsConfig, with_label: bool = True) -> Any:
    """Held-out evaluation: images and labels on the reference grid (inference resamples itself);
    the label keeps its own dtype (uint8 classes), not the int64 a loss takes: scoring needs no
    more, and a large picture's label takes an eighth of the memory."""
    from monai.transforms import Compose, EnsureTyped

    image = EnsureTyped(IMAGE_KEY, dtype=torch.float32)
    return Compose([*read_transforms(data, transforms, with_label), image])
