"""Grids of volumes: the canonical RAS+ frame, grid checks and moving label maps between grids.

3D volumes are handled in the canonical RAS+ frame (nibabel's closest canonical orientation),
arrays indexed (x, y, z) with a 4x4 affine in mm, so an image and its label read from different
formats (a DICOM series and a NIfTI label, say) compare directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from medseg.errors import DataError

AFFINE_TOL = 1e-3  # mm


def canonical_geometry(shape: tuple[int, ...], affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine after reorienting to the closest canonical (RAS+) frame."""
    ornt = io_orientation(affine)
    spatial = tuple(int(s) for s in shape[:3])
    new_affine = affine @ inv_ornt_aff(ornt, spatial)
    new_shape = tuple(spatial[int(i)] for i in ornt[:, 0]) + tuple(shape[3:])
    return new_shape, new_affine


def to_canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``array`` and ``affine`` reoriented to the closest canonical (RAS+) frame."""
    ornt = io_orientation(affine)
    _, new_affine = canonical_geometry(array.shape, affine)
    return np.ascontiguousarray(apply_orientation(array, ornt)), new_affine


def canonical_volume(
    array: np.ndarray, affine: np.ndarray, tags: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A volume read on its stored grid, in the canonical frame; ``tags`` gain the ``source_affine``
    and ``source_shape`` of the grid as stored (to write results back onto it) and ``spacing``."""
    if array.ndim == 2:
        array = array[..., None]
    tags["source_affine"], tags["source_shape"] = affine, tuple(array.shape[:3])
    array, affine = to_canonical(array, affine)
    tags["spacing"] = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return array, affine, tags


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
    transform = ornt_transform(io_orientation(affine), io_orientation(target_affine))
    return np.ascontiguousarray(apply_orientation(array, transform))
