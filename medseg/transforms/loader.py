"""``LoadCased``: read ``image`` and ``label`` of a case with medseg's readers into MetaTensors.

Every kind of file goes through the reader registry (:mod:`medseg.io.readers`), so DICOM series
are sorted and checked, CT is in HU and volumes are in the canonical RAS+ frame. Output is channel
first: (C, H, W) for 2D workflows, (C, X, Y, Z) for 3D. The meta data carry ``spacing`` (mm, or
pixels for PNG/JPEG), ``laterality`` ("L", "R" or "") and ``filename_or_obj``; the affine is the
RAS affine for volumes. 8-bit and 16-bit PNG/JPEG images are scaled to [0, 1]; DICOM and NIfTI
values are kept as they are.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from medseg.errors import DataError
from medseg.io.readers import RASTER, read_image2d, read_volume, reader_by_name
from medseg.transforms.keys import LABEL_KEY


def load_image(
    path: str | list[str],
    spatial_dims: int,
    voi_lut: bool = False,
    is_label: bool = False,
    channels: int | None = None,
) -> MetaTensor:
    """One image as a channel-first MetaTensor; ``path`` may be the file list of a DICOM series.

    ``channels``: what a picture is converted to (RGBA and palette to RGB), labels excepted.
    """
    if spatial_dims == 3:
        array, affine, tags = read_volume(path)
        data = array[None] if array.ndim == 3 else np.moveaxis(array, -1, 0)
        spacing = tuple(tags["spacing"])
        laterality = ""
        source = {"source_affine": tags["source_affine"], "source_shape": tags["source_shape"]}
    else:
        if isinstance(path, list):
            raise DataError(f"{path[0]}: a DICOM series in a 2D workflow; give single image files")
        array, tags = read_image2d(
            path, voi_lut=voi_lut and not is_label, channels=None if is_label else channels
        )
        data = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
        spacing = tuple(tags["spacing"])
        affine = np.diag([spacing[0], spacing[1], 1.0, 1.0])
        laterality = tags.get("laterality") or ""
        source = {"source_shape": tuple(array.shape[:2])}
    if is_label:
        tensor = torch.from_numpy(label_values(data))
    else:
        scale = 1.0
        if isinstance(path, str) and reader_by_name(path) is RASTER and data.dtype in (np.uint8, np.uint16):
            scale = 1.0 / float(np.iinfo(data.dtype).max)
        tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)) * scale
    meta = {
        "spacing": np.asarray(spacing, dtype=np.float64),
        "laterality": laterality,
        "filename_or_obj": path if isinstance(path, str) else str(path[0]),
        **source,
    }
    return MetaTensor(tensor, affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


def label_values(data: np.ndarray) -> np.ndarray:
    """A writable copy of a label array in a dtype torch computes with.

    Torch has no arithmetic for uint16/uint32/uint64 and none for rounding booleans, so 16-bit PNG
    masks, 1-bit masks and unsigned NIfTI labels are widened to int64 (bool to uint8); values are
    unchanged (ingest has checked they are label values).

    Example:
        >>> label_values(np.array([[0, 1]], dtype=np.uint16)).dtype
        dtype('int64')
    """
    array = np.array(data)  # a copy: PIL arrays are read-only
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        return array.astype(np.int64)
    return array


class LoadCased(MapTransform):
    """Read each key's path through the reader registry; ``label`` is read as a label.

    Labels keep their values and never get a VOI LUT.

    Args:
        keys: the keys read (``image``, ``label``).
        spatial_dims: 2 for pictures and single DICOM images, 3 for volumes.
        voi_lut: apply a DICOM image's VOI LUT or window to ``image``.
        channels: the channels pictures are read with (RGBA and palette become RGB for 3);
            None reads them as stored.
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
            path = [str(p) for p in d[key]] if isinstance(d[key], list | tuple) else str(d[key])
            d[key] = load_image(
                path, self.spatial_dims, self.voi_lut, is_label=key == LABEL_KEY, channels=self.channels
            )
        return d
