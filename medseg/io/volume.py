"""One entry point for every image kind: DICOM series folders, DICOM files, NIfTI and PNG/JPEG.

3D volumes come out in the canonical RAS+ frame (nibabel's closest canonical orientation), arrays
indexed (x, y, z) with a 4x4 affine in mm, so an image and its label read from different formats
(a DICOM series and a NIfTI label, say) compare directly. 2D images come out as (rows, columns[,
channels]) with a (row, column) spacing: PNG/JPEG as stored with spacing 1 (pixels), DICOM as in
:mod:`medseg.io.dicom_image`, 2D NIfTI transposed from NIfTI's (x=column, y=row) order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
AFFINE_TOL = 1e-3  # mm


def kind_of(path: str | Path) -> str:
    """``dicom_dir``, ``nifti``, ``raster`` or ``dicom`` (by name, else by the DICM preamble)."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        return "dicom_dir"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(RASTER_SUFFIXES):
        return "raster"
    if not p.exists():
        raise DataError(f"{p}: file not found")
    return "dicom"


def canonical_geometry(shape: tuple[int, ...], affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine after reorienting to the closest canonical (RAS+) frame."""
    from nibabel.orientations import inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    spatial = tuple(int(s) for s in shape[:3])
    new_affine = affine @ inv_ornt_aff(ornt, spatial)
    new_shape = tuple(spatial[int(i)] for i in ornt[:, 0]) + tuple(shape[3:])
    return new_shape, new_affine


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from nibabel.orientations import apply_orientation, io_orientation

    ornt = io_orientation(affine)
    _, new_affine = canonical_geometry(array.shape, affine)
    return np.ascontiguousarray(apply_orientation(array, ornt)), new_affine


def _load_nifti(path: str | Path) -> Any:
    import nibabel as nib

    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as err:
        raise DataError(f"{path}: not a readable NIfTI file ({type(err).__name__}: {err})") from None


def _nifti_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    img = _load_nifti(path)
    try:
        data = np.asarray(img.dataobj)
    except Exception as err:  # truncated gzip, short data
        raise DataError(f"{path}: cannot read the voxel data ({type(err).__name__}: {err})") from None
    return data, np.asarray(img.affine, dtype=float)


def read_volume(path: str | Path | list[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(array (x, y, z[, c]), RAS affine, tags) in the canonical frame. ``path`` may also be the list
    of files of one DICOM series (as :func:`medseg.io.dicom.scan_tree` groups them); ``tags`` hold the
    ``source_affine`` and ``source_shape`` of the grid as stored, to write results back onto it."""
    from medseg.io.dicom import read_series, read_series_folder

    if isinstance(path, list | tuple):
        array, affine, tags = read_series(list(path))
        return _canonical(array, affine, tags)
    kind = kind_of(path)
    if kind == "dicom_dir":
        array, affine, tags = read_series_folder(path)
    elif kind == "nifti":
        array, affine = _nifti_array(path)
        tags = {}
        while array.ndim > 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim > 4:
            raise DataError(f"{path}: {array.ndim}D data; expected a 3D volume (with channels last)")
    elif kind == "dicom":
        array, affine, tags = read_series([path])
    else:
        raise DataError(f"{path}: a 2D picture cannot be a 3D volume; use NIfTI or a DICOM series folder")
    return _canonical(array, affine, tags)


def _canonical(
    array: np.ndarray, affine: np.ndarray, tags: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    if array.ndim == 2:
        array = array[..., None]
    tags["source_affine"], tags["source_shape"] = affine, tuple(array.shape[:3])
    array, affine = to_canonical(array, affine)
    tags["spacing"] = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return array, affine, tags


def volume_geometry(path: str | Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Canonical (shape, affine) from headers only: no voxel data is decoded."""
    from medseg.io.dicom import folder_geometry, read_header, series_geometry

    kind = kind_of(path)
    shape: tuple[int, ...]
    if kind == "dicom_dir":
        geom = folder_geometry(path)
        shape, affine = geom.shape, geom.affine
    elif kind == "nifti":
        img = _load_nifti(path)
        shape = tuple(int(s) for s in img.shape)
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        affine = np.asarray(img.affine, dtype=float)
    elif kind == "dicom":
        geom = series_geometry([(Path(path), read_header(path))], str(path))
        shape, affine = geom.shape, geom.affine
    else:
        raise DataError(f"{path}: a 2D picture cannot be a 3D volume; use NIfTI or a DICOM series folder")
    if len(shape) == 2:
        shape = (*shape, 1)
    return canonical_geometry(shape, affine)


def same_grid(
    image: tuple[tuple[int, ...], np.ndarray], label: tuple[tuple[int, ...], np.ndarray]
) -> str | None:
    """Why ``label`` is not on the grid of ``image`` (canonical geometries), or None."""
    (ishape, iaff), (lshape, laff) = image, label
    if tuple(ishape[:3]) != tuple(lshape[:3]):
        return f"image grid {tuple(ishape[:3])} but label grid {tuple(lshape[:3])}"
    diff = float(np.abs(iaff - laff).max())
    if diff > AFFINE_TOL:
        return (
            f"image and label affines differ by up to {diff:.4g} mm (origin {np.round(iaff[:3, 3], 3)} vs "
            f"{np.round(laff[:3, 3], 3)}); the label must be on the image grid, so resample it onto the image"
        )
    return None


def read_image2d(path: str | Path, voi_lut: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """(array (rows, columns[, channels]), tags with ``spacing``) for 2D workflows."""
    from medseg.io.dicom_image import read_dicom_image
    from medseg.io.raster import read_raster

    kind = kind_of(path)
    if kind == "raster":
        array = read_raster(path)
        return array, {"spacing": (1.0, 1.0), "spacing_source": "pixel", "laterality": None}
    if kind == "dicom":
        return read_dicom_image(path, voi_lut)
    if kind == "nifti":
        array, affine = _nifti_array(path)
        while array.ndim > 2 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2:
            raise DataError(f"{path}: shape {array.shape}; a 2D workflow needs a 2D image")
        spacing = np.linalg.norm(affine[:3, :2], axis=0)
        return array.T.copy(), {"spacing": (float(spacing[1]), float(spacing[0])), "laterality": None}
    raise DataError(f"{path}: a DICOM series folder in a 2D workflow; give single image files")


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write a NIfTI file atomically (temporary name, then rename)."""
    import gzip

    import nibabel as nib

    from medseg.io.atomic import atomic_path

    path = Path(path)
    img = nib.Nifti1Image(np.asarray(array), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    data = img.to_bytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=4, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def place_on_grid(
    array: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target_affine: np.ndarray, name: str
) -> np.ndarray:
    """Paste a label map that covers part of a grid (a DICOM SEG without its empty frames, say) onto
    the full grid of ``shape``/``target_affine``; a DataError when the grids do not line up."""
    if not np.allclose(affine[:3, :3], target_affine[:3, :3], atol=AFFINE_TOL):
        raise DataError(
            f"{name}: its voxel axes or spacing differ from the reference grid; resample it first"
        )
    offset = np.linalg.solve(target_affine, affine[:, 3])[:3]
    start = np.round(offset).astype(int)
    if (
        np.abs(offset - start).max() > 1e-2
        or (start < 0).any()
        or (start + array.shape > np.array(shape)).any()
    ):
        raise DataError(f"{name}: it does not lie on the reference grid (voxel offset {np.round(offset, 3)})")
    out = np.zeros(shape, array.dtype)
    out[tuple(slice(s, s + n) for s, n in zip(start, array.shape, strict=True))] = array
    return out


def reorient(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    """``array`` (with ``affine``) in the voxel order of ``target_affine`` (same grid, other axes)."""
    from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(affine), io_orientation(target_affine))
    return np.ascontiguousarray(apply_orientation(array, transform))
