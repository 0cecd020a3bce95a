"""Single-frame 2D DICOM images (mammography, radiography) read with pydicom.

Order of operations: modality LUT, then the VOI LUT or WindowCenter/WindowWidth when asked for,
then MONOCHROME1 is inverted so that higher values are always brighter (MONOCHROME2). Values stay
at the stored bit depth (16-bit data are not squeezed to 8 bits). Laterality comes from
ImageLaterality, else Laterality, else the view code (``L``/``R`` in ViewCodeSequence or
SeriesDescription words such as ``LEFT_CC``); it is None when none says.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError
from medseg.io.dicom import decode, is_image


def value_range(ds: Any) -> tuple[float, float]:
    """Smallest and largest storable value for the pixel representation."""
    bits = int(ds.get("BitsStored", 16))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def laterality(ds: Any) -> str | None:
    """``L``, ``R`` or None from ImageLaterality, Laterality, the view code or the description."""
    for tag in ("ImageLaterality", "Laterality"):
        value = str(ds.get(tag, "") or "").upper()
        if value in ("L", "R"):
            return value
    for item in ds.get("ViewCodeSequence", []) or []:
        meaning = str(item.get("CodeMeaning", "")).lower()
        if "left" in meaning:
            return "L"
        if "right" in meaning:
            return "R"
    text = " ".join(str(ds.get(t, "")) for t in ("SeriesDescription", "ImageComments")).upper()
    match = re.search(r"(?<![A-Z])(LEFT|RIGHT)(?![A-Z])|(?<![A-Z])(L|R)(?:CC|MLO)(?![A-Z])", text)
    if match:
        return "L" if (match.group(1) or match.group(2)).startswith("L") else "R"
    return None


def pixel_spacing(ds: Any) -> tuple[tuple[float, float], str]:
    """(row, column) spacing in mm and where it came from; (1, 1) 'pixel' when the file has none."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        if tag in ds and ds.get(tag):
            row, col = (float(v) for v in ds.get(tag))
            return (row, col), tag
    return (1.0, 1.0), "pixel"


def read_dicom_image(path: str | Path, voi_lut: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """A single-frame DICOM image as float32 with its tags.

    Args:
        path: the DICOM file.
        voi_lut: apply the file's VOI LUT or window (mammography display values).

    Returns:
        (array (rows, columns), tags: spacing, laterality, photometric interpretation).

    Raises:
        DataError: not DICOM, unreadable, not an image, several frames or colour.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file (no DICM preamble)") from None
    except Exception as err:
        raise DataError(f"{path}: unreadable DICOM ({type(err).__name__}: {err})") from None
    reason = is_image(ds)
    if reason:
        raise DataError(f"{path}: {reason}; expected an image")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise DataError(f"{path}: {ds.NumberOfFrames} frames; a 2D workflow needs single-frame images")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"{path}: colour DICOM ({ds.SamplesPerPixel} samples per pixel) is not supported")
    arr = decode(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    lo, hi = value_range(ds)
    windowed = False
    if voi_lut and ("VOILUTSequence" in ds or "WindowCenter" in ds):
        arr = np.asarray(apply_voi_lut(arr, ds), dtype=np.float32)
        windowed = True
        if "VOILUTSequence" in ds:  # LUT output range is set by its bits per entry
            lo, hi = 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    if photometric == "MONOCHROME1":
        arr = (lo + hi) - arr
    spacing, source = pixel_spacing(ds)
    tags = {
        "spacing": spacing,
        "spacing_source": source,
        "laterality": laterality(ds),
        "photometric": photometric,
        "voi_applied": windowed,
        "modality": str(ds.get("Modality", "")),
        "bits_stored": int(ds.get("BitsStored", 16)),
        "headers": (ds,),
    }
    ds.pop(0x7FE00010, None)  # the header stays for the SEG of this image, the pixels go
    return np.ascontiguousarray(arr, dtype=np.float32), tags
