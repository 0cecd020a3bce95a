"""The table layout: one row per case in ``data.table`` (a CSV under ``data.root``) or the inline
``data.cases`` list.

Columns: ``id``, the image (``image``: one file; or ``image_0000``, ``image_0001``, ... one file per
channel, as nnU-Net numbers them; inline rows may give ``image`` as a list), ``label``, and
optionally ``patient_id`` and ``diagnosis``; other columns are kept for ``split.group_by``. Paths
are relative to ``data.root``; an image may be a picture, a DICOM file, a DICOM series folder or
NIfTI.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.config.models import DataConfig
from medseg.errors import DataError
from medseg.io.case import Case
from medseg.io.names import normalise_id
from medseg.io.readers import source_of
from medseg.io.table import read_rows

Bad = dict[str, str]
CHANNEL_COLUMN = re.compile(r"image_(\d{4})")
KNOWN = {"id", "image", "label", "patient_id", "diagnosis"}


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
        and case_id.isprintable()
    )


def _rows(data: DataConfig) -> tuple[list[dict[str, Any]], str]:
    root = Path(data.root)  # a folder: list_cases checked it
    if data.cases is not None:
        rows, source = [dict(r) for r in data.cases], "data.cases"
    else:
        path = root / data.table
        if not path.is_file():
            raise DataError(f"data.table: '{path}' not found; list the cases (id,image,label) there")
        rows, source = [dict(r) for r in read_rows(path)[1]], str(path)
    if not rows:
        raise DataError(f"{source}: no cases listed")
    return rows, source


def image_paths(row: Mapping[str, Any], where: str) -> list[str]:
    """The channel files of a row: ``image`` (a path or a list), or ``image_0000``, ``image_0001``...

    Example:
        >>> image_paths({"image_0001": "b.nii.gz", "image_0000": "a.nii.gz"}, "row 1")
        ['a.nii.gz', 'b.nii.gz']
    """
    numbered = sorted(
        (int(m.group(1)), str(v)) for k, v in row.items() if (m := CHANNEL_COLUMN.fullmatch(k)) and v
    )
    if numbered and row.get("image"):
        raise DataError(f"{where}: give the image as 'image' or as 'image_0000', 'image_0001', ..., not both")
    if numbered:
        if [n for n, _ in numbered] != list(range(len(numbered))):
            raise DataError(
                f"{where}: channel columns {[f'image_{n:04d}' for n, _ in numbered]} must be numbered "
                "0000, 0001, ..."
            )
        return [p for _, p in numbered]
    value = row.get("image")
    return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []


def _inside(root: Path, rel: str, where: str, key: str) -> Path:
    path = Path(rel)
    if not path.is_absolute() and not (root / path).resolve().is_relative_to(root.resolve()):
        raise DataError(
            f"{where}: {key} '{rel}' leads outside data.root ({root}); give an absolute path or keep the "
            "files under data.root"
        )
    return root / path


def _case(row: dict[str, Any], root: Path, where: str) -> Case | Bad:
    images = [_inside(root, p, where, "image") for p in image_paths(row, where)]
    label = _inside(root, str(row["label"]), where, "label")
    gone = [(k, p) for k, p in [*(("image", p) for p in images), ("label", label)] if not p.exists()]
    if gone:
        keys = " and ".join(dict.fromkeys(k for k, _ in gone))
        return {"id": row["id"], "reason": f"{keys} not found ({gone[0][1]})"}
    extra = {k: str(v) for k, v in row.items() if k not in KNOWN and not CHANNEL_COLUMN.fullmatch(k) and v}
    patient = normalise_id(str(row.get("patient_id") or "")) or row["id"]
    return Case(
        row["id"],
        tuple(source_of(p) for p in images),
        source_of(label),
        patient,
        row.get("diagnosis") or None,
        extra,
    )


def table_cases(data: DataConfig) -> tuple[list[Case], list[Bad]]:
    """The cases listed in ``data.cases`` or in the ``data.table`` CSV.

    Returns:
        (cases, skipped cases with their reasons).

    Raises:
        DataError: the root or table is missing or empty, a row lacks id, image or label, an id
            cannot name a file, or two ids differ only in letter case.
    """
    rows, source = _rows(data)
    cases: list[Case] = []
    bad: list[Bad] = []
    seen: dict[str, str] = {}
    for i, row in enumerate(rows):
        where = f"{source}: row {i + 1}"
        missing = [
            k
            for k in ("id", "image", "label")
            if not (image_paths(row, where) if k == "image" else row.get(k))
        ]
        if missing:
            raise DataError(f"{source}: row {i + 1} lacks {missing}; every row needs id, image and label")
        case_id = row["id"] = normalise_id(str(row["id"]))
        if not usable_id(case_id):
            raise DataError(
                f"{where}: id '{case_id[:80]}' cannot name a file (it holds / or \\, a control character, or "
                "starts with a dot); ids name prediction files, so use letters, digits, spaces, _ . and -"
            )
        if (first := seen.get(case_id.casefold())) is not None:
            if first != case_id:
                raise DataError(
                    f"{source}: ids '{first}' and '{case_id}' differ only in letter case; ids are compared "
                    "ignoring case, so rename one"
                )
            bad.append({"id": case_id, "reason": f"{source}: id listed twice"})
            continue
        seen[case_id.casefold()] = case_id
        found = _case(row, Path(data.root), f"{source}: case {case_id}")
        (cases if isinstance(found, Case) else bad).append(found)  # type: ignore[arg-type]
    return cases, bad
