"""Is a case usable? Every channel file and the label decode, lie on one grid, the channels add up
to what the model takes, and the label holds label values.

2D: every channel file and the mask share height and width; the mask has one channel. 3D: every
channel file and the label lie on one grid (same shape, affines within 1e-3 mm in the canonical
frame), checked from the headers before any voxel is decoded. Label values: ``{0, 1}`` or ``{0,
255}`` for two classes, ``0..num_classes-1`` otherwise, plus ``data.ignore_value``; with
``data.labels`` any values (those not picked become background); other values are refused with
advice that fits them (:func:`label_values_problem`).
"""

from __future__ import annotations

import numpy as np

from medseg.config.models import DataConfig
from medseg.errors import DataError
from medseg.io.case import Case
from medseg.io.geometry import same_grid
from medseg.io.loading import load
from medseg.io.readers import volume_geometry


def check_case(case: Case, data: DataConfig, spatial_dims: int, channels: int) -> Case | str:
    """The case with its shape and spacing measured, or why it cannot be used.

    Args:
        case: the case as its layout listed it.
        data: the ``data`` settings (class count, threshold, ignore value, labels).
        spatial_dims: 2 for pictures and 2D images, 3 for volumes.
        channels: the channels its image files must add up to.
    """
    try:
        return (_check_3d if spatial_dims == 3 else _check_2d)(case, data, channels)
    except DataError as err:
        return str(err)


def _per_file(case: Case, channels: int) -> int | None:
    """Channels each picture file is converted to: an equal share, or as stored."""
    n = len(case.images)
    return channels // n if channels % n == 0 else None


def _check_2d(case: Case, data: DataConfig, channels: int) -> Case | str:
    assert case.label is not None
    images = [load(src, 2, channels=_per_file(case, channels)) for src in case.images]
    mask, _ = load(case.label, 2, label=True)
    found = sum(a.shape[0] for a, _ in images)
    if found != channels:
        return f"image has {found} channel(s), {channels} expected (data.in_channels)"
    if mask.shape[0] != 1:
        return f"mask has {mask.shape[0]} channels; save it as a single-channel (grayscale) image"
    for (array, _), src in zip(images, case.images, strict=True):
        which = f"image {src.path.name}" if len(images) > 1 else "image"
        if array.shape[1:] != mask.shape[1:]:
            h, w = array.shape[1:]
            return f"{which} is {h}x{w} but mask is {mask.shape[1]}x{mask.shape[2]}"
        if not np.all(np.isfinite(array)):
            return f"{which} has NaN or infinite values"
    problem = mask_values_problem(mask[0], data)
    return problem or case.measured(mask.shape[1:], images[0][1].spacing)


def _check_3d(case: Case, data: DataConfig, channels: int) -> Case | str:
    assert case.label is not None
    label_geom = volume_geometry(case.label.path)
    found = 0
    for src in case.images:
        geom = volume_geometry(src.path)
        problem = same_grid(geom, label_geom)
        if problem:
            return problem if len(case.images) == 1 else f"{src.path.name}: {problem}"
        found += geom[0][3] if len(geom[0]) > 3 else 1
    if found != channels:
        return f"image has {found} channel(s), {channels} expected (data.in_channels)"
    label, _ = load(case.label, 3, label=True)
    for src in case.images:  # decodes every slice: truncated files show up here
        image, _ = load(src, 3)
        if not np.all(np.isfinite(image)):
            return f"image has {int((~np.isfinite(image)).sum())} NaN or infinite voxels"
    problem = mask_values_problem(label[0], data)
    spacing = np.linalg.norm(label_geom[1][:3, :3], axis=0)
    return problem or case.measured(label_geom[0][:3], tuple(spacing))


def label_values_problem(values: set[int], data: DataConfig) -> str | None:
    """Why a label holding ``values`` cannot be used as it is, or None.

    The advice fits the values found: few small integers are class indices (set the class count or
    pick classes), many values are a grey or JPEG-saved mask (a threshold halfway between its lowest
    and highest value). A threshold that leaves a non-empty mask empty is refused.

    Example:
        >>> cfg = DataConfig(root=".", binarize_threshold=127)
        >>> label_values_problem({0, 1}, cfg)
        'data.binarize_threshold 127 leaves this mask empty (its values are [0, 1]); use a threshold below 1'
    """
    if data.ignore_value is not None:
        values = values - {data.ignore_value}
    shown = f"{sorted(values)[:8]}{'...' if len(values) > 8 else ''}"
    if data.labels is not None:
        return None
    if data.binarize_threshold is not None:
        top = max(values, default=0)
        if 0 < top <= data.binarize_threshold:
            return (
                f"data.binarize_threshold {data.binarize_threshold:g} leaves this mask empty (its values "
                f"are {shown}); use a threshold below {top}"
            )
        return None
    allowed = [{0, 1}, {0, 255}] if data.num_classes == 2 else [set(range(data.num_classes))]
    if any(values <= a for a in allowed):
        return None
    return _values_advice(values, shown, data)


def _values_advice(values: set[int], shown: str, data: DataConfig) -> str:
    if values == set(range(max(values) + 1)) and max(values) < 32:
        return (
            f"label values {shown} look like class indices but data.num_classes is {data.num_classes}; set "
            f"data.num_classes: {max(values) + 1}, or pick and renumber classes with data.labels (for "
            f"example {{lesion: {sorted(values - {0})}}})"
        )
    if data.num_classes == 2 and len(values) > 2 and max(values) >= 32:
        middle = (min(values) + max(values)) // 2
        return (
            f"mask values {shown} are not label values (a grey or JPEG-saved mask?); set "
            f"data.binarize_threshold: {middle} (halfway between {min(values)} and {max(values)}) to "
            "binarise them"
        )
    return (
        f"label values {shown} do not fit data.num_classes {data.num_classes}; pick and renumber "
        "classes with data.labels (for example {liver: 5}), set data.num_classes, or set "
        "data.ignore_value to a value that marks unlabelled pixels"
    )


def mask_values_problem(mask: np.ndarray, data: DataConfig) -> str | None:
    """Why a mask's values cannot be used (fractions, or see :func:`label_values_problem`), or None."""
    values = np.unique(mask)
    if values.dtype.kind == "f" and not np.all(np.mod(values, 1) == 0):
        fractions = values[np.mod(values, 1) != 0][:4].tolist()
        return f"label has non-integer values (for example {fractions}); masks hold class values"
    return label_values_problem({int(v) for v in values.tolist()}, data)
