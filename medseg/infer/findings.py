"""What ``medseg predict`` measures on each label map it writes: per class, the predicted volume
and the number of connected components, so a reader can see at a glance an organ that is missing,
too small or broken into pieces.

Volumes are in mL for 3D inputs, mm² for 2D DICOM and NIfTI (from the pixel spacing) and pixels for
PNG/JPEG pictures.
"""

from __future__ import annotations

import numpy as np


def findings(
    label: np.ndarray, affine: np.ndarray | None, names: dict[int, str], unit: tuple[str, float]
) -> dict[str, object]:
    """``volume_<class>``, ``components_<class>`` and ``volume_unit`` of one label map.

    Args:
        label: integer label map on the input's grid.
        affine: its voxel-to-mm affine (None or ignored for pictures).
        names: foreground class names by value.
        unit: the volume unit and its factor from the voxel size
            (:meth:`medseg.io.source.Properties.volume_unit`: pictures in pixels).

    Example:
        >>> lab = np.zeros((4, 6), np.uint8); lab[0, :2] = 1; lab[3, 4:] = 1
        >>> findings(lab, None, {1: "lesion"}, ("px", 1.0))
        {'volume_unit': 'px', 'volume_lesion': 4.0, 'components_lesion': 2}
    """
    from scipy import ndimage

    name, factor = unit
    voxel = 1.0
    if name != "px" and affine is not None:
        n = label.ndim
        voxel = float(abs(np.linalg.det(np.asarray(affine, float)[:n, :n])))
    out: dict[str, object] = {"volume_unit": name}
    label = np.asarray(label)
    counts = np.bincount(label.ravel(), minlength=max(names, default=0) + 1)
    boxes = ndimage.find_objects(label)  # one pass: each class's bounding box
    for value, name in names.items():
        out[f"volume_{name}"] = round(float(counts[value]) * voxel * factor, 4)
        box = boxes[value - 1] if counts[value] else None
        out[f"components_{name}"] = int(ndimage.label(label[box] == value)[1]) if box else 0
    return out
