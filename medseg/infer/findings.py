"""What ``medseg predict`` measures on each label map it writes: per class, the predicted volume
and the number of connected components, so a reader can see at a glance an organ that is missing,
too small or broken into pieces; with ``predict.statistics``, the intensities inside each class
(as TotalSegmentator's ``statistics.json``).

Volumes are in mL for 3D inputs, mm² for 2D DICOM and NIfTI (from the pixel spacing) and pixels for
PNG/JPEG pictures. Intensities are those of the image as read, before any normalisation (HU for CT:
DICOM pixel values after the rescale slope and intercept, NIfTI values as stored), on the input's
own grid, the voxels of the label map written.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medseg.io.geometry import reorient
from medseg.io.source import Properties

STATISTICS = ("mean", "median", "std", "min", "max")


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


def intensities_on_source(raw: np.ndarray, read_affine: Any, props: Properties) -> np.ndarray:
    """The image as read (channel-first; 3D on its canonical grid, ``read_affine``) on the grid of the
    input as stored, where the label map is written: a volume's axes permuted and flipped back
    (no value changes); a 2D image is read on its stored grid already."""
    raw = np.asarray(raw)
    if props.spatial_dims == 2 or read_affine is None:
        return raw
    affine = np.asarray(read_affine, dtype=float)
    return np.stack([reorient(channel, affine, props.label_affine()) for channel in raw])


def class_statistics(
    image: np.ndarray, label: np.ndarray, names: dict[int, str], voxel_volume: float
) -> dict[str, dict[str, Any]]:
    """Per class: its value, voxel count, volume and the mean, median, std, min and max of the image
    inside it (lists over channels when the image has several; None for a class not found).

    Args:
        image: (C, *spatial) intensities as read, on the grid of ``label``.
        label: integer label map.
        names: foreground class names by value.
        voxel_volume: the volume of one voxel in the unit wanted (mL, mm², pixels).

    Raises:
        ValueError: the image and the label are not on one grid.

    Example:
        >>> img = np.array([[[1.0, 2.0, 3.0, 10.0]]]); lab = np.array([[1, 1, 1, 0]])
        >>> class_statistics(img, lab, {1: "a"}, 1.0)["a"]["median"]
        2.0
    """
    from scipy import ndimage

    if image.shape[1:] != label.shape:
        raise ValueError(f"image grid {image.shape[1:]} differs from the label's {label.shape}")
    boxes = ndimage.find_objects(np.asarray(label))  # each class's bounding box, in one pass
    out: dict[str, dict[str, Any]] = {}
    for value, name in names.items():
        box = boxes[value - 1] if value - 1 < len(boxes) else None
        entry: dict[str, Any] = {"value": value, "voxels": 0, "volume": 0.0} | dict.fromkeys(STATISTICS)
        if box is not None:
            inside = image[(slice(None), *box)][:, label[box] == value].astype(np.float64)  # (C, n)
            stats = {
                "mean": inside.mean(axis=1),
                "median": np.median(inside, axis=1),
                "std": inside.std(axis=1),
                "min": inside.min(axis=1),
                "max": inside.max(axis=1),
            }
            one = image.shape[0] == 1
            entry |= {k: float(v[0]) if one else [float(x) for x in v] for k, v in stats.items()}
            entry |= {"voxels": int(inside.shape[1]), "volume": round(inside.shape[1] * voxel_volume, 4)}
        out[name] = entry
    return out


def statistics_file(
    image: np.ndarray, label: np.ndarray, names: dict[int, str], props: Properties
) -> dict[str, Any]:
    """The contents of ``<key>_statistics.json``: units, channels and :func:`class_statistics`."""
    unit, factor = props.volume_unit()
    voxel = 1.0
    if unit != "px":
        n = label.ndim
        voxel = float(abs(np.linalg.det(props.label_affine()[:n, :n]))) * factor
    return {
        "volume_unit": unit,
        "intensity_unit": "HU" if props.modality == "CT" else "as stored",
        "modality": props.modality,
        "channels": int(image.shape[0]),
        "classes": class_statistics(image, label, names, voxel),
    }


def statistics_columns(statistics: dict[str, Any] | None) -> dict[str, object]:
    """``mean_<class>`` and ``median_<class>`` for ``manifest.csv`` (one channel; with several,
    ``mean_<class>_<k>``), rounded to 4 decimals; empty for a class not found."""
    out: dict[str, object] = {}
    for name, entry in ((statistics or {}).get("classes") or {}).items():
        for stat in ("mean", "median"):
            value = entry[stat]
            if isinstance(value, list):
                out |= {f"{stat}_{name}_{k}": round(v, 4) for k, v in enumerate(value)}
            else:
                out[f"{stat}_{name}"] = "" if value is None else round(value, 4)
    return out
