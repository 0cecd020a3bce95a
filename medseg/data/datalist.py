"""Ingest: list the cases of the configured layout, verify each, write the datalist.

Layouts (:mod:`medseg.data.layouts`) list typed cases; :func:`medseg.data.checks.check_case`
verifies each (files decode, one grid, channels, label values). Bad cases stop ingest with the full
list, or are skipped and recorded with ``data.on_bad_case: skip``. One file listed for two cases
(by path, or by its bytes under another name) is refused: folds would test on what they trained on.

Privacy, as in every command: the names of DICOM files and folders (which real exports make of the
patient's name) are never shown, in the log, the reasons of ``datalist.json`` or the report; each
is replaced by a keyed pseudonym of its path inside ``data.root`` (:mod:`medseg.io.privacy`). The
list of usable cases keeps their paths: it is how the run reads them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

from medseg.config.models import DataConfig
from medseg.data.checks import check_case
from medseg.data.layouts import list_cases
from medseg.errors import DataError, out_of_memory_named
from medseg.io.case import Case
from medseg.io.dicom import walk_files
from medseg.io.privacy import Redactor, hidden, pseudonym
from medseg.io.raster import set_pixel_limit
from medseg.io.readers import reader_by_name
from medseg.io.source import Source

log = logging.getLogger(__name__)
BadCase = dict[str, str]  # {"id", "reason"}

__all__ = ["BadCase", "Case", "build_datalist"]


def build_datalist(
    data: DataConfig, spatial_dims: int = 2, read_channels: int | None = None
) -> tuple[list[Case], list[BadCase]]:
    """List and verify the cases of ``data``.

    Args:
        data: the ``data`` settings.
        spatial_dims: 2 for pictures and 2D DICOM, 3 for volumes.
        read_channels: channels each case's image files must add up to; default ``data.in_channels``.

    Returns:
        (usable cases with their shape and spacing, bad cases with their reasons).

    Raises:
        DataError: a missing folder or table, no usable case, one file under two cases, or bad
            cases while ``data.on_bad_case`` is ``stop`` (every one listed).
    """
    set_pixel_limit(data.max_image_pixels)  # for the training loaders of this process too
    cases, bad = list_cases(data)
    redact = names_hidden(Path(data.root), cases)
    good = []
    with hidden(redact):  # pydicom's warnings name the files it reads
        for case in cases:
            with out_of_memory_named(f"case {case.id}"):
                checked = check_case(case, data, spatial_dims, read_channels or data.in_channels)
            if isinstance(checked, Case):
                good.append(checked)
            else:
                bad.append({"id": case.id, "reason": checked})
        refuse_shared_files(good, redact)
    bad = [{"id": b["id"], "reason": redact(b["reason"])} for b in bad]
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


def names_hidden(root: Path, cases: Iterable[Case]) -> Redactor:
    """What hides the DICOM file and folder names of ``cases`` (and every DICOM file under their
    series folders); names of files known by their suffix (NIfTI, pictures) may be shown."""
    redact = Redactor(root)
    for case in cases:
        for src in (*case.images, *([case.label] if case.label else [])):
            if src.named_by_path:
                continue
            for path in src.files:
                redact.add(walk_files(path) if path.is_dir() else [path])
    hidden_files = (p for p in walk_files(root) if reader_by_name(p) is None) if root.is_dir() else ()
    redact.add(hidden_files)  # also files no case lists (a bad case's reason may name them)
    return redact


def shareable(root: Path, cases: list[Case]) -> list[dict[str, object]]:
    """The cases as ``datalist.json`` holds them, each DICOM file and folder path replaced by its
    keyed pseudonym inside ``root`` (what may leave the run folder, such as MLflow's copy).

    Example:
        >>> from medseg.io.source import Source
        >>> series, label = Source.one("/d/DOE^J/CT", "dicom_series"), Source.one("/d/c.nii.gz", "nifti")
        >>> case = Case("c", (series,), label)
        >>> out = shareable(Path("/d"), [case])[0]
        >>> out["images"][0]["path"].startswith("<p"), out["label"]["path"]
        (True, '/d/c.nii.gz')
    """
    out = []
    for case in cases:
        entry = case.to_json()
        entry["images"] = [_hidden(root, s) for s in case.images]
        entry["label"] = _hidden(root, case.label) if case.label else None
        out.append(entry)
    return out


def _hidden(root: Path, src: Source) -> dict[str, object]:
    """A source as JSON, its paths pseudonyms unless its own name may be shown."""

    if src.named_by_path:
        return src.to_json()
    rel = [f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name for f in src.files]
    shown = [f"<{pseudonym(r)}>" for r in rel]
    return {"kind": src.kind, "path": shown[0]} if len(shown) == 1 else {"kind": src.kind, "files": shown}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in walk_files(path) if path.is_dir() else [path]:
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def refuse_shared_files(cases: list[Case], redact: Redactor) -> None:
    """One image or label file under two cases (by path, or its bytes under another name) lets a
    fold test on what it trained on: refused, naming the cases.

    Raises:
        DataError: naming the cases that share a file.
    """
    seen: dict[str, str] = {}
    clashes = []
    for case in cases:
        for src in case.images:
            for key in (str(src.path.resolve()), _digest(src.path)):
                other = seen.setdefault(key, case.id)
                if other != case.id:
                    clashes.append(f"  {other} and {case.id}: {redact(str(src.path))}")
                    break
    if clashes:
        raise DataError(
            "one image serves two cases, so a fold could test on a case it trained on:\n"
            + "\n".join(sorted(set(clashes)))
            + "\nRemove the copies (or give each case its own image)."
        )
