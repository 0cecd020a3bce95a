"""A digest of a study's data: the case ids and the bytes of every image and label file, so two
runs can be told to have used the same data, whatever the folder was called.

Example:
    >>> cases_digest([])[0]
    'e3b0c44298fc1c14'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medseg.io.case import Case
from medseg.io.dicom import walk_files

CHUNK = 1 << 20


def _files(case: Case) -> list[Path]:
    """The case's files, those of a series folder included, in a stable order."""
    out: list[Path] = []
    for name in case.files:
        path = Path(name)
        out += sorted(walk_files(path)) if path.is_dir() else [path]
    return out


def cases_digest(cases: list[Case]) -> tuple[str, str]:
    """(sha256 of ids and file contents, first 16 hex digits; a JSON profile: cases, files, bytes)."""
    h = hashlib.sha256()
    n_files = n_bytes = 0
    for case in sorted(cases, key=lambda c: c.id):
        h.update(case.id.encode() + b"\0")
        for path in _files(case):
            if not path.is_file():
                continue
            n_files += 1
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    n_bytes += len(chunk)
    profile: dict[str, Any] = {"cases": len(cases), "files": n_files, "bytes": n_bytes}
    return h.hexdigest()[:16], json.dumps(profile)
