"""``LoadCased``: read ``image`` and ``label`` of a case into MetaTensors, by each source's reader.

Every file goes through :func:`medseg.io.loading.load`, so DICOM series are sorted and checked, CT
is in HU, volumes are in the canonical RAS+ frame and pictures are scaled to [0, 1]; nothing here
knows a format. An image may be several channel files (T1, T2, FLAIR): they are read in order and
stacked as channels, and must lie on one grid. Output is channel first: (C, H, W) for 2D
workflows, (C, X, Y, Z) for 3D. The meta data carry ``spacing`` (mm, or pixels for pictures),
``laterality``, ``source_shape`` (and ``source_affine`` for volumes), ``kind`` and
``filename_or_obj``; the affine is the RAS affine for volumes.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medseg.errors import DataError
from medseg.io.loading import load
from medseg.io.source import Properties, Source
from medseg.transforms.keys import LABEL_KEY

Sources = Source | str | Path | Sequence[Source | str | Path]


def read_channels(
    sources: Sources,
    spatial_dims: int,
    channels: int | None = None,
    voi_lut: bool = False,
    label: bool = False,
) -> tuple[np.ndarray, Properties]:
    """The channel files of an image read and stacked, with the first file's properties.

    Args:
        sources: one source (or path), or one per channel file in order.
        spatial_dims: 2 or 3.
        channels: the channels the files add up to (pictures are converted to an equal share).
        voi_lut: apply a DICOM image's VOI LUT or window.
        label: read a label map.

    Raises:
        DataError: a file cannot be read, or the channel files are not on one grid.
    """
    group = [sources] if isinstance(sources, Source | str | Path) else list(sources)
    share = channels // len(group) if channels and channels % len(group) == 0 else None
    read = [load(s, spatial_dims, share, voi_lut, label) for s in group]
    first, props = read[0]
    for (array, other), src in zip(read[1:], group[1:], strict=True):
        if array.shape[1:] != first.shape[1:] or np.abs(other.affine - props.affine).max() > 1e-3:
            name = src.shown if isinstance(src, Source) else src
            raise DataError(
                f"{name}: channel file not on the grid of the first ({array.shape[1:]} vs {first.shape[1:]})"
            )
    array = first if len(read) == 1 else np.concatenate([a for a, _ in read], axis=0)
    props.channels = int(array.shape[0])
    return array, props


def to_meta_tensor(array: np.ndarray, props: Properties, name: str) -> MetaTensor:
    """A channel-first array as a MetaTensor carrying its properties' plain values."""
    meta = {**props.meta(), "filename_or_obj": name}
    return MetaTensor(
        torch.from_numpy(np.ascontiguousarray(array)),
        affine=torch.as_tensor(props.affine, dtype=torch.float64),
        meta=meta,
    )


def load_image(
    sources: Sources,
    spatial_dims: int,
    voi_lut: bool = False,
    is_label: bool = False,
    channels: int | None = None,
) -> MetaTensor:
    """One image (or label) as a channel-first MetaTensor; see :func:`read_channels`."""
    array, props = read_channels(sources, spatial_dims, None if is_label else channels, voi_lut, is_label)
    return to_meta_tensor(array, props, _name(sources))


def _name(sources: Sources) -> str:
    first = sources if isinstance(sources, Source | str | Path) else next(iter(sources))
    return str(first.path if isinstance(first, Source) else first)


class LoadCased(MapTransform):
    """Read each key's sources through their readers; ``label`` is read as a label.

    Labels keep their values and never get a VOI LUT.

    Args:
        keys: the keys read (``image``, ``label``).
        spatial_dims: 2 for pictures and single DICOM images, 3 for volumes.
        voi_lut: apply a DICOM image's VOI LUT or window to ``image``.
        channels: the channels an image's files add up to (RGBA and palette pictures become RGB
            for 3); None reads them as stored.
        allow_missing_keys: skip absent keys instead of failing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int = 2,
        voi_lut: bool = False,
        channels: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = spatial_dims
        self.voi_lut = voi_lut
        self.channels = channels

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = key == LABEL_KEY
            array, props = read_channels(
                d[key], self.spatial_dims, None if label else self.channels, self.voi_lut, label
            )
            d[key] = to_meta_tensor(array, props, _name(d[key]))
        return d
