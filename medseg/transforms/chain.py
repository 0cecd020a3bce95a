"""Transform chains built from the configuration, keyed on ``image`` and ``label``.

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

from medseg.config import PipelineConfig, TransformList
from medseg.registry import IMAGE_KEY, LABEL_KEY, role_modes, transform_args
from medseg.transforms.labels import PrepareLabeld, label_selection

KEYS = [IMAGE_KEY, LABEL_KEY]


def build_chain(items: TransformList, section: str) -> list[Any]:
    """Instantiate a configured list such as ``transforms.train``."""
    out = []
    for i, item in enumerate(items):
        ((name, args),) = item.items()
        cls, bound = transform_args(name, args or {}, f"transforms.{section}[{i}].{name}")
        out.append(cls(**bound))
    return out


def load_transforms(cfg: PipelineConfig, with_label: bool = True) -> list[Any]:
    """Steps 1-2: files to MetaTensors on the reference grid, before any intensity change."""
    from medseg.transforms.loader import LoadCased
    from medseg.transforms.mammo import MammoPrepared

    keys = KEYS if with_label else [IMAGE_KEY]
    mammo = cfg.data.mammography
    chain: list[Any] = [
        LoadCased(keys, spatial_dims=cfg.transforms.spatial_dims, voi_lut=bool(mammo and mammo.voi_lut))
    ]
    if with_label:
        data = cfg.data
        chain.append(
            PrepareLabeld(
                LABEL_KEY,
                num_classes=data.num_classes,
                threshold=data.binarize_threshold,
                ignore_value=data.ignore_value,
                select=label_selection(data.labels),
            )
        )
    if mammo is not None:
        chain.append(MammoPrepared(keys, mammo.flip_to, mammo.crop_breast, mammo.crop_margin, mammo.max_size))
    return chain


def read_transforms(cfg: PipelineConfig, with_label: bool = True) -> list[Any]:
    """Steps 1-3: the reference grid with intensities prepared."""
    return load_transforms(cfg, with_label) + build_chain(cfg.transforms.preprocess, "preprocess")


def grid_transforms(cfg: PipelineConfig, keys: list[str]) -> list[Any]:
    """Step 4: from the reference grid to the model grid."""
    from monai.transforms import Resized, SpatialPadd

    from medseg.transforms.resample import ResampleToSpacingd

    t = cfg.transforms
    chain: list[Any] = []
    if t.spatial_size is not None:
        chain.append(Resized(keys, spatial_size=t.spatial_size, mode=role_modes("Resized", keys)))
    elif t.spacing is not None:
        chain.append(ResampleToSpacingd(keys, spacing=t.spacing))
    if t.patch_size is not None:
        chain.append(SpatialPadd(keys, spatial_size=t.patch_size))
    return chain


def patch_transforms(cfg: PipelineConfig) -> list[Any]:
    from monai.transforms import RandCropByPosNegLabeld

    t = cfg.transforms
    if t.patch_size is None:
        return []
    return [
        RandCropByPosNegLabeld(
            KEYS,
            label_key=LABEL_KEY,
            spatial_size=t.patch_size,
            pos=t.patch_pos,
            neg=t.patch_neg,
            num_samples=t.patches_per_image,
            allow_smaller=False,
        )
    ]


def finish_transforms() -> list[Any]:
    from monai.transforms import CastToTyped, EnsureTyped

    return [EnsureTyped(IMAGE_KEY, dtype=torch.float32), CastToTyped(LABEL_KEY, dtype=torch.int64)]


def train_transforms(cfg: PipelineConfig) -> Any:
    from monai.transforms import Compose

    return Compose(
        read_transforms(cfg)
        + grid_transforms(cfg, KEYS)
        + patch_transforms(cfg)
        + build_chain(cfg.transforms.train, "train")
        + finish_transforms()
    )


def eval_transforms(cfg: PipelineConfig) -> Any:
    """Validation during training: whole images on the model grid, no augmentation."""
    from monai.transforms import Compose

    return Compose(read_transforms(cfg) + grid_transforms(cfg, KEYS) + finish_transforms())


def original_size_transforms(cfg: PipelineConfig, with_label: bool = True) -> Any:
    """Held-out evaluation: images and labels on the reference grid (inference resamples itself)."""
    from monai.transforms import Compose, EnsureTyped

    tail = finish_transforms() if with_label else [EnsureTyped(IMAGE_KEY, dtype=torch.float32)]
    return Compose(read_transforms(cfg, with_label) + tail)
