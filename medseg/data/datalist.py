"""Ingest: list the cases, verify each image and label pair, write the datalist.

Two layouts. ``isic2018``: images and masks paired by id in the ISIC 2018 Task 1 folders.
``table``: rows of ``id``, ``image``, ``label`` (and optional ``patient_id``, ``diagnosis``) from
``data.table`` (CSV under ``data.root``) or ``data.cases``; an image is a PNG/JPEG, a DICOM file, a
DICOM series folder or NIfTI, and paths are relative to ``data.root``.

A 2D case is usable when image and mask both decode, share height and width, the image has the
expected channels, the mask has one, and the mask holds only label values (``{0, 1}`` or
``{0, 255}`` for two classes, ``0..num_classes-1`` otherwise, plus ``data.ignore_value``); masks
with other values, such as JPEG-compressed ones, are refused unless ``data.binarize_threshold``
is set. A 3D case is usable when the label lies on the image grid (same shape, affines within
1e-3 mm in the canonical frame) and holds label values; with ``data.labels`` any values are
accepted (those not picked become background). Bad cases stop ingest with the full list, or are
skipped and recorded with ``data.on_bad_case: skip``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import DataConfig
from medseg.errors import DataError
from medseg.io.geometry import same_grid
from medseg.io.names import normalise_id
from medseg.io.raster import set_pixel_limit
from medseg.io.readers import read_image2d, read_volume, volume_geometry
from medseg.io.table import read_rows

log = logging.getLogger(__name__)

Case = dict[str, Any]


def read_metadata(data: DataConfig) -> dict[str, dict[str, str]]:
    """``image_id`` -> row of ``metadata.csv``; empty when the file is not configured or absent."""
    if not data.metadata:
        return {}
    path = Path(data.root) / data.metadata
    if not path.is_file():
        return {}
    names, rows = read_rows(path)
    if "image_id" not in names:
        raise DataError(f"{path}: needs an 'image_id' column (found {names})")
    return {normalise_id(row["image_id"]): row for row in rows}


def _index_by_id(paths: list[Path], ids: list[str], what: str) -> dict[str, Path]:
    """{id case-folded: path}; ids that differ only in letter case are an error naming both files.

    Ids arrive in NFC, so names that differ only in Unicode form already share one id.
    """
    index: dict[str, Path] = {}
    clashes = []
    for path, case_id in zip(paths, ids, strict=True):
        other = index.setdefault(case_id.casefold(), path)
        if other != path and normalise_id(other.stem) != normalise_id(path.stem):
            clashes.append(f"  {other.name} and {path.name}")
    if clashes:
        raise DataError(
            f"{what}: ids that differ only in letter case name one case (ids are compared ignoring "
            "case, so one lesion cannot land in two folds):\n"
            + "\n".join(clashes)
            + "\nRename or remove one of each."
        )
    return index


def find_pairs(data: DataConfig) -> tuple[list[Case], list[Case]]:
    """Pair images with masks by id (Unicode NFC, letter case ignored).

    Returns:
        (pairs, bad cases with a reason).

    Raises:
        DataError: a folder is missing, no image is found, or two images (or masks) have ids that
            differ only in letter case.
    """
    root = Path(data.root)
    img_dir, mask_dir = root / data.image_dir, root / data.mask_dir
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' not found")
    for folder, key in ((img_dir, "data.image_dir"), (mask_dir, "data.mask_dir")):
        if not folder.is_dir():
            raise DataError(
                f"{key}: folder '{folder}' not found; the ISIC 2018 layout needs it under data.root"
            )
    exts = {e.lower() for e in data.image_extensions}
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in exts and not p.name.startswith("."))
    if not images:
        raise DataError(f"{img_dir}: no images with extensions {sorted(exts)}; check data.root")
    suffix = f"{data.mask_suffix}{data.mask_extension}".lower()
    mask_files = sorted(p for p in mask_dir.iterdir() if p.name.lower().endswith(suffix))
    mask_ids = [normalise_id(p.name[: -len(suffix)]) for p in mask_files]
    masks = _index_by_id(mask_files, mask_ids, str(mask_dir))
    image_ids = [normalise_id(p.stem) for p in images]
    by_id = _index_by_id(images, image_ids, str(img_dir))
    pairs, bad = [], []
    for img, case_id in zip(images, image_ids, strict=True):
        if by_id[case_id.casefold()] != img:
            bad.append(
                {
                    "id": case_id,
                    "image": str(img),
                    "reason": f"two images share this id ({by_id[case_id.casefold()].name})",
                }
            )
            continue
        mask = masks.get(case_id.casefold())
        if mask is None:
            expected = mask_dir / f"{case_id}{data.mask_suffix}{data.mask_extension}"
            bad.append({"id": case_id, "image": str(img), "reason": f"no mask (expected {expected})"})
            continue
        pairs.append({"id": case_id, "image": str(img), "label": str(mask)})
    for key, mask in masks.items():
        if key not in by_id:
            bad.append(
                {
                    "id": normalise_id(mask.name[: -len(suffix)]),
                    "label": str(mask),
                    "reason": "mask has no image",
                }
            )
    return pairs, bad


def usable_id(case_id: str) -> bool:
    """Whether a case id can name its prediction and overlay files.

    Example:
        >>> usable_id("IMD002"), usable_id("../../etc/x"), usable_id(".hidden"), usable_id("a b")
        (True, False, False, True)
    """
    return (
        bool(case_id)
        and not case_id.startswith(".")
        and not any(c in case_id for c in "/\\")
        and (case_id.isprintable())
    )


def read_table(data: DataConfig) -> tuple[list[Case], list[Case]]:
    """The cases listed in ``data.cases`` or in the ``data.table`` CSV.

    Args:
        data: the ``data`` section; paths are resolved against ``data.root``.

    Returns:
        (usable cases, skipped cases with their reasons).

    Raises:
        DataError: the root or table is missing, empty, or a row lacks id, image or label.
    """
    root = Path(data.root)
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' not found")
    if data.cases is not None:
        rows, source = [dict(r) for r in data.cases], "data.cases"
    else:
        path = root / data.table
        if not path.is_file():
            raise DataError(f"data.table: '{path}' not found; list the cases (id,image,label) there")
        rows = read_rows(path)[1]
        source = str(path)
    if not rows:
        raise DataError(f"{source}: no cases listed")
    pairs, bad = [], []
    seen: dict[str, str] = {}
    for i, row in enumerate(rows):
        missing = [k for k in ("id", "image", "label") if not row.get(k)]
        if missing:
            raise DataError(f"{source}: row {i + 1} lacks {missing}; every row needs id, image and label")
        case_id = row["id"] = normalise_id(row["id"])
        if not usable_id(case_id):
            raise DataError(
                f"{source}: row {i + 1}: id '{case_id[:80]}' cannot name a file (it holds / or \\, a "
                "control character, or starts with a dot); ids name prediction files, so use "
                "letters, digits, spaces, _ . and -"
            )
        for key in ("image", "label"):
            rel = Path(row[key])
            if not rel.is_absolute() and not (root / rel).resolve().is_relative_to(root.resolve()):
                raise DataError(
                    f"{source}: case {case_id}: {key} '{row[key]}' leads outside data.root ({root}); "
                    "give an absolute path or keep the files under data.root"
                )
        if case_id.casefold() in seen:
            first = seen[case_id.casefold()]
            if first != case_id:
                raise DataError(
                    f"{source}: ids '{first}' and '{case_id}' differ only in letter case; ids are "
                    "compared ignoring case, so rename one"
                )
            bad.append({"id": case_id, "reason": f"{source}: id listed twice"})
            continue
        seen[case_id.casefold()] = case_id
        case = {**row, "image": str(root / row["image"]), "label": str(root / row["label"])}
        gone = [k for k in ("image", "label") if not Path(case[k]).exists()]
        if gone:
            bad.append({**case, "reason": f"{' and '.join(gone)} not found ({case[gone[0]]})"})
            continue
        pairs.append(case)
    return pairs, bad


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
        if top > 0 and top <= data.binarize_threshold:
            return (
                f"data.binarize_threshold {data.binarize_threshold:g} leaves this mask empty (its values "
                f"are {shown}); use a threshold below {top}"
            )
        return None
    allowed = [{0, 1}, {0, 255}] if data.num_classes == 2 else [set(range(data.num_classes))]
    if any(values <= a for a in allowed):
        return None
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


def check_pair(case: Case, data: DataConfig, read_channels: int | None = None) -> str | None:
    """Why a 2D pair cannot be used, or None when it can. Records height and width on the case."""

    channels_needed = read_channels or data.in_channels
    try:
        image, tags = read_image2d(case["image"], channels=channels_needed)
        mask, _ = read_image2d(case["label"])
    except DataError as err:
        return str(err)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != channels_needed:
        return f"image has {channels} channel(s), {channels_needed} expected (data.in_channels)"
    if mask.ndim != 2:
        return f"mask has {mask.shape[2]} channels; save it as a single-channel (grayscale) image"
    if image.shape[:2] != mask.shape:
        return f"image is {image.shape[0]}x{image.shape[1]} but mask is {mask.shape[0]}x{mask.shape[1]}"
    if not np.all(np.isfinite(image)):
        return "image has NaN or infinite values"
    problem = mask_values_problem(mask, data)
    if problem:
        return problem
    case["height"], case["width"] = int(image.shape[0]), int(image.shape[1])
    return None


def check_volume_pair(case: Case, data: DataConfig, read_channels: int | None = None) -> str | None:
    """Why a 3D pair cannot be used, or None. Records shape and spacing on the case."""

    channels_needed = read_channels or data.in_channels
    try:
        image_geom = volume_geometry(case["image"])
        label_geom = volume_geometry(case["label"])
        problem = same_grid(image_geom, label_geom)
        if problem:
            return problem
        channels = image_geom[0][3] if len(image_geom[0]) > 3 else 1
        if channels != channels_needed:
            return f"image has {channels} channel(s), {channels_needed} expected (data.in_channels)"
        label, _, _ = read_volume(case["label"])
        image, _, _ = read_volume(case["image"])  # decodes every slice: truncated files show up here
        if not np.all(np.isfinite(image)):
            return f"image has {int((~np.isfinite(image)).sum())} NaN or infinite voxels"
    except DataError as err:
        return str(err)
    problem = mask_values_problem(label, data)
    if problem:
        return problem
    case["shape"] = [int(s) for s in image_geom[0][:3]]
    case["spacing"] = [round(float(s), 6) for s in np.linalg.norm(image_geom[1][:3, :3], axis=0)]
    return None


def build_datalist(
    data: DataConfig, spatial_dims: int = 2, read_channels: int | None = None
) -> tuple[list[Case], list[Case]]:
    """List and verify the cases of ``data``.

    Args:
        data: the ``data`` settings.
        spatial_dims: 2 for pictures and 2D DICOM, 3 for volumes.
        read_channels: channels each image file must have; default ``data.in_channels``.

    Returns:
        (usable cases, bad cases with their reasons).

    Raises:
        DataError: a missing folder or table, no usable case, or bad cases while
            ``data.on_bad_case`` is ``stop`` (every one listed).
    """
    set_pixel_limit(data.max_image_pixels)  # for the training loaders of this process too
    pairs, bad = read_table(data) if data.layout == "table" else find_pairs(data)
    meta = read_metadata(data) if data.layout == "isic2018" else {}
    check = check_volume_pair if spatial_dims == 3 else check_pair
    good = []
    for case in pairs:
        reason = check(case, data, read_channels)
        if reason:
            bad.append({**case, "reason": reason})
            continue
        row = meta.get(case["id"], {})
        case["patient_id"] = normalise_id(row.get("patient_id") or case.get("patient_id") or case["id"])
        case["diagnosis"] = row.get("diagnosis") or case.get("diagnosis") or None
        good.append(case)
    if bad and data.on_bad_case == "stop":
        listing = "\n".join(f"  {b['id']}: {b['reason']}" for b in bad)
        raise DataError(
            f"{data.root}: {len(bad)} bad case(s):\n{listing}\n"
            "Fix or remove them, or set data.on_bad_case: skip to continue without them."
        )
    for b in bad:
        log.warning("skipping case %s: %s", b["id"], b["reason"])
    if not good:
        raise DataError(f"{data.root}: no usable cases")
    return good, bad
