"""Transform chains built from the configuration, keyed on ``image`` and ``label``.

Order, the same for training, validation and inference so that every stage sees the same image:
read (PNG/JPEG, channel first) -> 8-bit intensities to [0, 1] -> label values to classes ->
``transforms.preprocess`` -> resize to ``transforms.spatial_size`` (image bilinear, label nearest-exact)
-> ``transforms.train`` (augmentation, training only) -> label cast to int64.
MONAI dictionary transforms draw one random state per call and apply it to every key, so image and
label move together; CacheDataset caches everything before the first random transform.
"""

from __future__ import annotations

from typing import Any

import torch

from medseg.config import PipelineConfig, TransformList
from medseg.registry import IMAGE_KEY, LABEL_KEY, role_modes, transform_args
from medseg.transforms.labels import PrepareLabeld


def build_chain(items: TransformList, section: str) -> list[Any]:
    """Instantiate a configured list such as ``transforms.train``."""
    out = []
    for i, item in enumerate(items):
        ((name, args),) = item.items()
        cls, bound = transform_args(name, args or {}, f"transforms.{section}[{i}].{name}")
        out.append(cls(**bound))
    return out


def read_transforms(cfg: PipelineConfig, with_label: bool = True) -> list[Any]:
    from monai.data import PILReader
    from monai.transforms import EnsureChannelFirstd, EnsureTyped, LoadImaged, ScaleIntensityRanged

    keys = [IMAGE_KEY, LABEL_KEY] if with_label else [IMAGE_KEY]
    chain: list[Any] = [
        LoadImaged(keys, reader=PILReader(reverse_indexing=False), image_only=True),  # type: ignore[arg-type]
        EnsureChannelFirstd(keys),
        ScaleIntensityRanged(IMAGE_KEY, a_min=0, a_max=255, b_min=0.0, b_max=1.0),
        EnsureTyped(IMAGE_KEY, dtype=torch.float32),
    ]
    if with_label:
        chain.append(
            PrepareLabeld(
                LABEL_KEY,
                num_classes=cfg.data.num_classes,
                threshold=cfg.data.binarize_threshold,
                ignore_value=cfg.data.ignore_value,
            )
        )
    return chain + build_chain(cfg.transforms.preprocess, "preprocess")


def resize_transform(cfg: PipelineConfig, keys: list[str]) -> Any:
    from monai.transforms import Resized

    return Resized(keys, spatial_size=cfg.transforms.spatial_size, mode=role_modes("Resized", keys))


def finish_transforms() -> list[Any]:
    from monai.transforms import CastToTyped

    return [CastToTyped(LABEL_KEY, dtype=torch.int64)]


def train_transforms(cfg: PipelineConfig) -> Any:
    from monai.transforms import Compose

    keys = [IMAGE_KEY, LABEL_KEY]
    return Compose(
        read_transforms(cfg)
        + [resize_transform(cfg, keys)]
        + build_chain(cfg.transforms.train, "train")
        + finish_transforms()
    )


def eval_transforms(cfg: PipelineConfig) -> Any:
    """Validation during training: the training pipeline without augmentation."""
    from monai.transforms import Compose

    return Compose(
        read_transforms(cfg) + [resize_transform(cfg, [IMAGE_KEY, LABEL_KEY])] + finish_transforms()
    )


def original_size_transforms(cfg: PipelineConfig, with_label: bool = True) -> Any:
    """Held-out evaluation: images and labels at their original size (resizing happens in inference)."""
    from monai.transforms import Compose

    return Compose(read_transforms(cfg, with_label) + (finish_transforms() if with_label else []))
