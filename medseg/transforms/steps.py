"""The fixed steps of every transform chain, built from the configuration without the registry.

1. read (:class:`~medseg.transforms.loader.LoadCased`) and turn label values into classes;
2. mammography geometry when ``data.mammography`` is set;
4. the model grid: resize to ``transforms.spatial_size`` or resample to ``transforms.spacing``;
   pad to ``transforms.patch_size``;
5. training patches; 6. dtypes (image float32, label int64).

Step 3 (``transforms.preprocess``) and the augmentation come from the registry; whole chains are
put together in :mod:`medseg.chains`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medseg.config.models import DataConfig, MammographyConfig, TransformsConfig, image_channels
from medseg.transforms.keys import IMAGE_KEY, KEYS, LABEL_KEY, role_modes
from medseg.transforms.labels import PrepareLabeld, label_selection
from medseg.transforms.loader import LoadCased
from medseg.transforms.mammo import MammoPrepared
from medseg.transforms.resample import ResampleToSpacingd


def load_transforms(data: DataConfig, transforms: TransformsConfig, with_label: bool = True) -> list[Any]:
    """Steps 1-2: files to MetaTensors on the reference grid, before any intensity change."""
    keys = KEYS if with_label else [IMAGE_KEY]
    mammo = data.mammography
    chain: list[Any] = [
        LoadCased(
            keys,
            spatial_dims=transforms.spatial_dims,
            voi_lut=bool(mammo and mammo.voi_lut),
            channels=image_channels(data, transforms),
        )
    ]
    if with_label:
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
        chain.append(mammo_prepared(mammo, keys))
    return chain


def mammo_prepared(mammo: MammographyConfig, keys: Sequence[str] = (IMAGE_KEY, LABEL_KEY)) -> MammoPrepared:
    """Step 2 for ``data.mammography``: flip, breast crop and size cap, one geometry for all keys."""
    return MammoPrepared(keys, mammo.flip_to, mammo.crop_breast, mammo.crop_margin, mammo.max_size)


def grid_transforms(t: TransformsConfig, keys: list[str]) -> list[Any]:
    """Step 4: from the reference grid to the model grid (``transforms``' size or spacing)."""
    from monai.transforms import Resized, SpatialPadd

    chain: list[Any] = []
    if t.spatial_size is not None:
        chain.append(Resized(keys, spatial_size=t.spatial_size, mode=role_modes("Resized", keys)))
    elif t.spacing is not None:
        chain.append(ResampleToSpacingd(keys, spacing=t.spacing))
    if t.patch_size is not None:
        chain.append(SpatialPadd(keys, spatial_size=t.patch_size))
    return chain


def patch_transforms(t: TransformsConfig) -> list[Any]:
    """Step 5: random patches balanced between foreground and background (``transforms.patch_size``).

    Args:
        t: the ``transforms`` section.

    Returns:
        The patch sampler, or nothing when whole images are trained on.
    """
    from monai.transforms import RandCropByPosNegLabeld

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
    """Step 6: image float32, label int64."""
    from monai.transforms import CastToTyped, EnsureTyped

    return [EnsureTyped(IMAGE_KEY, dtype=torch.float32), CastToTyped(LABEL_KEY, dtype=torch.int64)]
