"""PNG/JPEG reading and writing with Pillow: arrays are (height, width[, channels])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medseg.errors import DataError
from medseg.io.atomic import atomic_path


def read_raster(path: str | Path) -> np.ndarray:
    """Read a PNG or JPEG into a numpy array as stored (no mode conversion, as MONAI's PILReader
    reads it for training); a clear DataError names the file when that fails."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({err}); replace or remove the file") from None


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as PNG atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
