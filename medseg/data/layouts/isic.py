"""The ISIC 2018 Task 1 layout: pictures and masks in two folders, paired by id, and an optional
``metadata.csv`` (``image_id``, ``patient_id``, ``diagnosis``).

Ids are compared in Unicode NFC and ignoring letter case, in the folders and in the metadata table
alike, and a metadata id may carry the picture's suffix (``IMD002.jpg``): a row that names no case
is reported, and two rows of one case that disagree on the patient are refused, since a patient
on both sides of a fold would leak.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medseg.config.models import DataConfig
from medseg.errors import DataError
from medseg.io.case import Case
from medseg.io.names import normalise_id
from medseg.io.readers import case_stem
from medseg.io.source import RASTER, Source
from medseg.io.table import read_rows

log = logging.getLogger(__name__)
Bad = dict[str, str]


def index_by_id(paths: list[Path], ids: list[str], what: str) -> dict[str, Path]:
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


def _folders(data: DataConfig) -> tuple[Path, Path]:
    root = Path(data.root)  # a folder: list_cases checked it
    img_dir, mask_dir = root / data.image_dir, root / data.mask_dir
    for folder, key in ((img_dir, "data.image_dir"), (mask_dir, "data.mask_dir")):
        if not folder.is_dir():
            raise DataError(
                f"{key}: folder '{folder}' not found; the ISIC 2018 layout needs it under data.root"
            )
    return img_dir, mask_dir


def isic_cases(data: DataConfig) -> tuple[list[Case], list[Bad]]:
    """Pair pictures with masks by id (Unicode NFC, letter case ignored), with their metadata.

    Returns:
        (cases, bad cases with a reason).

    Raises:
        DataError: a folder is missing, no picture is found, or two pictures (or masks) have ids
            that differ only in letter case.
    """
    img_dir, mask_dir = _folders(data)
    exts = {e.lower() for e in data.image_extensions}
    images = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in exts and not p.name.startswith("."))
    if not images:
        raise DataError(f"{img_dir}: no images with extensions {sorted(exts)}; check data.root")
    suffix = f"{data.mask_suffix}{data.mask_extension}".lower()
    mask_files = sorted(p for p in mask_dir.iterdir() if p.name.lower().endswith(suffix))
    masks = index_by_id(mask_files, [normalise_id(p.name[: -len(suffix)]) for p in mask_files], str(mask_dir))
    image_ids = [normalise_id(p.stem) for p in images]
    by_id = index_by_id(images, image_ids, str(img_dir))
    meta = read_metadata(data, {i.casefold() for i in image_ids})
    cases, bad = [], []
    for img, case_id in zip(images, image_ids, strict=True):
        if by_id[case_id.casefold()] != img:
            bad.append(
                {"id": case_id, "reason": f"two images share this id ({by_id[case_id.casefold()].name})"}
            )
        elif (mask := masks.get(case_id.casefold())) is None:
            expected = mask_dir / f"{case_id}{data.mask_suffix}{data.mask_extension}"
            bad.append({"id": case_id, "reason": f"no mask (expected {expected})"})
        else:
            row = meta.get(case_id.casefold(), {})
            patient = normalise_id(row.get("patient_id") or case_id)
            source, label = Source.one(img, RASTER), Source.one(mask, RASTER)
            cases.append(Case(case_id, (source,), label, patient, row.get("diagnosis") or None))
    for key, mask in masks.items():
        if key not in by_id:
            bad.append({"id": normalise_id(mask.name[: -len(suffix)]), "reason": "mask has no image"})
    return cases, bad


def read_metadata(data: DataConfig, ids: set[str]) -> dict[str, dict[str, str]]:
    """Case id (case-folded) -> row of ``metadata.csv``; empty when not configured or absent.

    ``image_id`` is matched as ingest matches files: Unicode NFC, letter case ignored, a picture
    suffix dropped. Rows naming no case are logged; rows of one case that disagree on
    ``patient_id`` or ``diagnosis`` are refused.

    Raises:
        DataError: no ``image_id`` column, or conflicting rows of one case.
    """
    if not data.metadata or not (path := Path(data.root) / data.metadata).is_file():
        return {}
    names, rows = read_rows(path)
    if "image_id" not in names:
        raise DataError(f"{path}: needs an 'image_id' column (found {names})")
    out: dict[str, dict[str, str]] = {}
    unmatched = []
    for number, row in enumerate(rows, start=2):
        key = normalise_id(case_stem(row["image_id"])).casefold()
        if key not in ids:
            unmatched.append(row["image_id"])
            continue
        first = out.setdefault(key, row)
        for column in ("patient_id", "diagnosis"):
            if (first.get(column) or "") != (row.get(column) or ""):
                raise DataError(
                    f"{path}: line {number}: image_id {row['image_id']} is listed again with {column} "
                    f"'{row.get(column)}' (first '{first.get(column)}'); keep one row per image"
                )
    if unmatched:
        log.warning(
            "%s: %d row(s) name no image and are ignored (ids are compared without suffix and letter "
            "case): %s", path, len(unmatched), ", ".join(unmatched[:5]) + (" ..." * (len(unmatched) > 5)),
        )  # fmt: skip
    return out
