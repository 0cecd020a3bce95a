"""Ingest for the ISIC 2018 Task 1 layout: pair images and masks by id, verify each pair, list them.

A case is usable when its image and mask both decode, share height and width, the image has
``data.in_channels`` channels, the mask has one, and the mask holds only label values (``{0, 1}`` or
``{0, 255}`` for two classes, ``0..num_classes-1`` otherwise, plus ``data.ignore_value``). Masks
with other values, such as JPEG-compressed ones, are refused unless ``data.binarize_threshold``
is set. Bad cases stop ingest with the full list, or are skipped and recorded with
``data.on_bad_case: skip``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import DataConfig
from medseg.errors import DataError
from medseg.io.raster import read_raster

log = logging.getLogger(__name__)

Case = dict[str, Any]


def read_metadata(data: DataConfig) -> dict[str, dict[str, str]]:
    """``image_id`` -> row of ``metadata.csv``; empty when the file is not configured or absent."""
    if not data.metadata:
        return {}
    path = Path(data.root) / data.metadata
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "image_id" not in reader.fieldnames:
            raise DataError(f"{path}: needs an 'image_id' column (found {reader.fieldnames})")
        return {row["image_id"].strip(): {k: (v or "").strip() for k, v in row.items()} for row in reader}


def find_pairs(data: DataConfig) -> tuple[list[Case], list[Case]]:
    """Pair images with masks by id. Returns (pairs, bad cases with a reason)."""
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
    pairs, bad = [], []
    seen: set[str] = set()
    for img in images:
        case_id = img.stem
        if case_id in seen:
            bad.append({"id": case_id, "image": str(img), "reason": "two images share this id"})
            continue
        seen.add(case_id)
        mask = mask_dir / f"{case_id}{data.mask_suffix}{data.mask_extension}"
        if not mask.is_file():
            bad.append({"id": case_id, "image": str(img), "reason": f"no mask (expected {mask})"})
            continue
        pairs.append({"id": case_id, "image": str(img), "label": str(mask)})
    suffix = f"{data.mask_suffix}{data.mask_extension}"
    for mask in sorted(mask_dir.glob(f"*{suffix}")):
        case_id = mask.name[: -len(suffix)]
        if case_id not in seen:
            bad.append({"id": case_id, "label": str(mask), "reason": "mask has no image"})
    return pairs, bad


def check_pair(case: Case, data: DataConfig) -> str | None:
    """Why this pair cannot be used, or None when it can. Records height and width on the case."""
    try:
        image = read_raster(case["image"])
        mask = read_raster(case["label"])
    except DataError as err:
        return str(err)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != data.in_channels:
        return f"image has {channels} channel(s), data.in_channels is {data.in_channels}"
    if mask.ndim != 2:
        return f"mask has {mask.shape[2]} channels; save it as a single-channel (grayscale) PNG"
    if image.shape[:2] != mask.shape:
        return f"image is {image.shape[0]}x{image.shape[1]} but mask is {mask.shape[0]}x{mask.shape[1]}"
    values = set(np.unique(mask).tolist())
    if data.ignore_value is not None:
        values.discard(data.ignore_value)
    if data.binarize_threshold is None:
        allowed = [{0, 1}, {0, 255}] if data.num_classes == 2 else [set(range(data.num_classes))]
        if not any(values <= a for a in allowed):
            shown = sorted(values)[:8]
            return (
                f"mask values {shown}{'...' if len(values) > 8 else ''} are not label values "
                "(a JPEG-saved mask?); set data.binarize_threshold (for example 127) to binarise them"
            )
    case["height"], case["width"] = int(image.shape[0]), int(image.shape[1])
    return None


def build_datalist(data: DataConfig) -> tuple[list[Case], list[Case]]:
    """Verified cases and bad cases. Raises DataError listing every bad case unless skipping."""
    pairs, bad = find_pairs(data)
    meta = read_metadata(data)
    good = []
    for case in pairs:
        reason = check_pair(case, data)
        if reason:
            bad.append({**case, "reason": reason})
            continue
        row = meta.get(case["id"], {})
        case["patient_id"] = row.get("patient_id") or case["id"]
        case["diagnosis"] = row.get("diagnosis") or None
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
