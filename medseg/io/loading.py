"""Reading an image by its source's reader: a channel-first array and its properties.

Every stage reads images through :func:`load` (training, held-out prediction, ``medseg predict``,
the fingerprint), so none needs to know a format: pictures are scaled to [0, 1], volumes come in
the canonical RAS+ frame, labels keep their values, and the :class:`~medseg.io.source.Properties`
say what the writers need to put a result back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.errors import DataError
from medseg.io.geometry import canonical_volume
from medseg.io.readers import Reader, reader_of, source_of
from medseg.io.source import Properties, Source


def load(
    src: Source | str | Path,
    spatial_dims: int,
    channels: int | None = None,
    voi_lut: bool = False,
    label: bool = False,
) -> tuple[np.ndarray, Properties]:
    """An image as a channel-first array with its properties, by its source's reader.

    Images come out float32: pictures of 8 or 16 bits scaled to [0, 1], DICOM and NIfTI values as
    stored (CT in HU); labels keep their values in a dtype torch computes with
    (:func:`label_values`). Volumes are in the canonical RAS+ frame.

    Args:
        src: the image (a path is given a reader now).
        spatial_dims: 2 for pictures and 2D images, 3 for volumes.
        channels: what pictures are converted to (RGBA and palette to RGB for 3); None: as stored.
        voi_lut: apply a DICOM image's VOI LUT or window.
        label: read a label map (no conversion, no scaling, no VOI LUT).

    Returns:
        ((C, *spatial) array, properties).

    Raises:
        DataError: the file cannot be read as asked (named, with what to do).
    """
    src = src if isinstance(src, Source) else source_of(src)
    reader = reader_of(src.kind)
    if spatial_dims == 3:
        array, props = _load_3d(reader, src)
    else:
        if len(src.files) > 1:
            raise DataError(f"{src.shown}: a DICOM series in a 2D workflow; give single image files")
        array, props = _load_2d(reader, src, None if label else channels, voi_lut and not label)
    if label:
        return label_values(array), props
    scale = 1.0
    if reader.pictures and array.dtype in (np.uint8, np.uint16):
        scale = 1.0 / float(np.iinfo(array.dtype).max)
    return np.asarray(array, dtype=np.float32) * np.float32(scale), props


def _load_2d(
    reader: Reader, src: Source, channels: int | None, voi_lut: bool
) -> tuple[np.ndarray, Properties]:
    array, tags = reader.read_2d(src.path, voi_lut, channels)
    spacing = tuple(float(s) for s in tags["spacing"])
    n = 1 if array.ndim == 2 else int(array.shape[2])
    modality = tags.get("modality") or ({1: "grey", 3: "RGB"}.get(n, "") if reader.pictures else "")
    props = Properties(
        src.kind,
        spacing,
        np.diag([spacing[0], spacing[1], 1.0, 1.0]),
        tuple(int(s) for s in array.shape[:2]),
        tags.get("file_affine"),
        pixels=tags.get("spacing_source") == "pixel",
        laterality=tags.get("laterality") or "",
        modality=str(modality),
        channels=n,
        headers=tuple(tags.get("headers", ())),
    )
    return (array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)), props


def _load_3d(reader: Reader, src: Source) -> tuple[np.ndarray, Properties]:
    array, affine, tags = canonical_volume(*reader.read_source_3d(src))
    props = Properties(
        src.kind,
        tuple(float(s) for s in tags["spacing"]),
        affine,
        tuple(int(s) for s in tags["source_shape"]),
        np.asarray(tags["source_affine"], dtype=float),
        modality=str(tags.get("modality", "")),
        channels=1 if array.ndim == 3 else int(array.shape[3]),
        headers=tuple(tags.get("headers", ())),
    )
    return (array[None] if array.ndim == 3 else np.moveaxis(array, -1, 0)), props


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
