"""NIfTI files with nibabel: header-only geometry, voxel data, atomic writing."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medseg.errors import DataError
from medseg.io.atomic import atomic_path


def load_nifti(path: str | Path) -> Any:
    """The nibabel image (header read, voxel data not yet); DataError naming the file otherwise."""
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as err:
        raise DataError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from None


def nifti_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(voxel data as stored, affine)."""
    img = load_nifti(path)
    try:
        data = np.asarray(img.dataobj)
    except Exception as err:  # truncated gzip, short data
        raise DataError(f"{path}: cannot read the voxel data ({type(err).__name__}: {err})") from None
    return data, np.asarray(img.affine, dtype=float)


def nifti_shape(path: str | Path) -> tuple[int, ...]:
    """Shape from the header, trailing singleton axes dropped beyond the third."""
    shape = tuple(int(s) for s in load_nifti(path).shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write a NIfTI file atomically (temporary name, then rename).

    Args:
        path: the file to write (``.nii`` or ``.nii.gz``).
        array: the voxels.
        affine: their RAS affine.
    """
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(array), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    data = img.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=1, mtime=0)  # nibabel's own level
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
