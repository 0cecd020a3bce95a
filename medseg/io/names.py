"""Names medseg writes and compares: safe output file names, case ids, path references.

Every file medseg names after something it read (a DICOM UID, an input's own name) goes through
:func:`safe_name`, so a crafted value can never lead outside the output folder; :func:`inside`
checks the final path once more. Case ids are compared in Unicode NFC, so a name typed on one
system and copied from another is one case.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

from medseg.errors import DataError

MAX_NAME = 120  # characters of a name part; longer ones are cut and end in a hash of the whole
_UNSAFE = re.compile(r"[^\w.\-]+")


def normalise_id(text: str) -> str:
    """A case id in Unicode NFC, as ids are compared.

    Example:
        >>> normalise_id("cafe\\u0301") == normalise_id("caf\\u00e9")
        True
    """
    return unicodedata.normalize("NFC", text)


def digest(text: str, n: int = 12) -> str:
    """A stable short hash of ``text`` (hex, ``n`` characters)."""
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:n]


def safe_name(text: str) -> str:
    """A file-name part of letters, digits, ``_``, ``.`` and ``-`` only, never hidden or empty.

    Args:
        text: any value, such as a UID or a file name read from an input.

    Returns:
        The value with every run of other characters (``/`` and ``\\`` included) replaced by
        ``_``, leading dots removed, and cut to :data:`MAX_NAME` characters with a hash of the
        whole when longer.

    Example:
        >>> safe_name("../../etc/passwd")
        '_.._etc_passwd'
        >>> safe_name("1.2.840.113619.2.5")
        '1.2.840.113619.2.5'
    """
    name = _UNSAFE.sub("_", normalise_id(text)).lstrip(".") or "_"
    if len(name) > MAX_NAME:
        name = f"{name[: MAX_NAME - 13]}-{digest(text)}"
    return name


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused when it would not be a direct child of ``folder``.

    Raises:
        DataError: ``name`` holds a path separator or resolves elsewhere.
    """
    path = Path(folder) / name
    if path.resolve().parent != Path(folder).resolve() or path.name != name:
        raise DataError(f"output name '{safe_name(name)}' would leave the output folder; refused")
    return path
