"""PNG/JPEG reading and writing with Pillow: arrays are (height, width[, channels]).

Pictures are read as displayed: the EXIF orientation of a phone or camera JPEG is applied, so a
mask drawn on the displayed picture lies on the array medseg reads (at ingest, in training, in
``predict`` and in ``evaluate`` alike). Pictures over a pixel limit are refused before they are
decoded (Pillow's guard against decompression bombs); :func:`set_pixel_limit` raises it for
trusted files.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medseg.errors import DataError
from medseg.io.atomic import atomic_path

DEFAULT_PIXEL_LIMIT = 89_478_485  # Pillow's own default (about 9459 x 9459)
# Modes converted when a model takes this many channels, where the meaning is clear.
CONVERT = {3: {"RGB": None, "RGBA": "RGB", "P": "RGB", "PA": "RGB"}, 1: {"LA": "L", "L": None}}
ONE_CHANNEL_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}
_limit = {"pixels": DEFAULT_PIXEL_LIMIT}


def set_pixel_limit(pixels: int | None) -> None:
    """The largest picture (height x width) read; None restores the default."""
    _limit["pixels"] = pixels or DEFAULT_PIXEL_LIMIT
    Image.MAX_IMAGE_PIXELS = _limit["pixels"]  # Pillow refuses at twice this; medseg at once


def _open(path: str | Path) -> Image.Image:
    """The picture, header read, refused above the pixel limit before its data are decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:  # over twice the limit: read the header alone
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = _limit["pixels"]
    if im.width * im.height > _limit["pixels"]:
        size = f"{im.width}x{im.height} pixels"
        im.close()
        raise DataError(
            f"{path}: {size} is over the limit of {_limit['pixels']:,} pixels that guards against "
            "decompression bombs; if the file is trusted, raise data.max_image_pixels (in the "
            "pipeline, or --set data.max_image_pixels=N for medseg predict) or --max-image-pixels "
            "(medseg evaluate)"
        )
    return im


def _channels(im: Image.Image, channels: int, path: str | Path) -> Image.Image:
    """``im`` converted to ``channels`` where the meaning is clear; DataError otherwise."""
    rules = CONVERT.get(channels)
    if rules is None or (channels == 1 and im.mode in ONE_CHANNEL_MODES):
        return im
    if im.mode in rules:
        target = rules[im.mode]
        return im if target is None else im.convert(target)
    have, kind = len(im.getbands()), "RGB" if channels == 3 else "grey"
    raise DataError(
        f"{path}: a {im.mode} picture ({have} channel(s)); the model takes {channels} ({kind}); "
        f"convert it to {kind} first"
    )


def read_raster(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read a PNG or JPEG into a numpy array, upright as displayed (EXIF orientation applied).

    Args:
        path: the picture.
        channels: the channels a model takes (RGBA and palette pictures become RGB for 3, grey
            with alpha becomes grey for 1; other mismatches are refused); None reads the values as
            stored (masks: a palette PNG gives its indices).

    Returns:
        (height, width[, channels]) as stored in the file's mode.

    Raises:
        DataError: the file is missing, unreadable, over the pixel limit, or has channels that
            cannot be converted to ``channels``.
    """
    try:
        with _open(path) as im:
            upright = ImageOps.exif_transpose(im)
            if channels is not None:
                upright = _channels(upright, channels, path)
            upright.load()
            return np.asarray(upright)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({err}); replace or remove the file") from None


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as PNG atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
