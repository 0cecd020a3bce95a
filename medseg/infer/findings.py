"""What ``medseg predict`` measures on each label map it writes: per class, the predicted volume
and the number of connected components, so a reader can see at a glance an organ that is missing,
too small or broken into pieces.

Volumes are in mL for 3D inputs, mm² for 2D DICOM and NIfTI (from the pixel spacing) and pixels for
PNG/JPEG pictures.
"""

from __future__ import annotations

import numpy as np

from medseg.io.readers import RASTER


def volume_unit(kind: str, ndim: int) -> tuple[str, float]:
    """The unit of an input's volumes and the factor from the voxel size (mm³, mm², px)."""
    if kind == RASTER.kind:
        return "px", 1.0
    return ("mL", 1e-3) if ndim == 3 else ("mm2", 1.0)


def findings(
    label: np.ndarray, affine: np.ndarray | None, names: dict[int, str], kind: str
) -> dict[str, object]:
    """``volume_<class>``, ``components_<class>`` and ``volume_unit`` of one label map.

    Args:
        label: integer label map on the input's grid.
        affine: its voxel-to-mm affine (None or ignored for pictures).
        names: foreground class names by value.
        kind: the input's kind (pictures are measured in pixels).

    Example:
        >>> lab = np.zeros((4, 6), np.uint8); lab[0, :2] = 1; lab[3, 4:] = 1
        >>> findings(lab, None, {1: "lesion"}, "raster")
        {'volume_unit': 'px', 'volume_lesion': 4.0, 'components_lesion': 2}
    """
    from scipy import ndimage

    unit, factor = volume_unit(kind, label.ndim)
    voxel = 1.0
    if unit != "px" and affine is not None:
        n = label.ndim
        voxel = float(abs(np.linalg.det(np.asarray(affine, float)[:n, :n])))
    out: dict[str, object] = {"volume_unit": unit}
    label = np.asarray(label)
    counts = np.bincount(label.ravel(), minlength=max(names, default=0) + 1)
    boxes = ndimage.find_objects(label)  # one pass: each class's bounding box
    for value, name in names.items():
        out[f"volume_{name}"] = round(float(counts[value]) * voxel * factor, 4)
        box = boxes[value - 1] if counts[value] else None
        out[f"components_{name}"] = int(ndimage.label(label[box] == value)[1]) if box else 0
    return out
