"""Names medseg writes and compares: safe output file names, case ids, path references.

Every file medseg names after something it read (a DICOM UID, an input's own name) goes through
:func:`safe_name`, so a crafted value can never lead outside the output folder; :func:`inside`
checks the final path once more. Case ids are compared in Unicode NFC, so a name typed on one
system and copied from another is one case.

Lengths are counted in bytes, as file systems count them (255 bytes a name on ext4, XFS, btrfs and
APFS; a CJK character is 3 bytes of UTF-8). Whatever names a file (an output key, a case id) is a
*stem* of at most :data:`MAX_STEM_BYTES` bytes (:func:`file_stem`, cut with a hash of the whole), so
the stem, the longest suffix medseg adds to it (:data:`SUFFIX_BYTES`: ``_probabilities.nii.gz``)
and the decoration of a temporary file (:data:`TEMP_BYTES`: ``.NAME.PID.tmp``) fit in one name.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

from medseg.errors import DataError

MAX_NAME = 120  # bytes of a name part (UTF-8); longer ones are cut and end in a hash of the whole
NAME_MAX = 255  # bytes of one file name on the usual file systems (ext4, XFS, btrfs, APFS)
TEMP_BYTES = 16  # what a temporary file adds to a name: "." + name + "." + pid + ".tmp"
SUFFIX_BYTES = 32  # the longest suffix medseg adds to a stem ("_probabilities.nii.gz" is 21)
MAX_STEM_BYTES = NAME_MAX - TEMP_BYTES - SUFFIX_BYTES  # 207: what a case id or an output key may take
HASH_LEN = 12  # hex characters of the hash that ends a shortened name
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
        ``_``, leading dots removed, and cut to :data:`MAX_NAME` bytes with a hash of the whole
        when longer (:func:`shorten`).

    Example:
        >>> safe_name("../../etc/passwd")
        '_.._etc_passwd'
        >>> safe_name("1.2.840.113619.2.5")
        '1.2.840.113619.2.5'
    """
    name = _UNSAFE.sub("_", normalise_id(text)).lstrip(".") or "_"
    return shorten(name, MAX_NAME, text)


def byte_length(text: str) -> int:
    """The length of ``text`` in a file name: bytes of UTF-8 (3 for a CJK character)."""
    return len(text.encode("utf-8", "surrogateescape"))


def shorten(name: str, limit: int, whole: str | None = None) -> str:
    """``name`` when it takes at most ``limit`` bytes, else its start (whole characters) and ``-``
    and a hash of ``whole`` (default: ``name``), ``limit`` bytes at most: stable, and distinct for
    distinct wholes.

    Example:
        >>> shorten("abc", 20), byte_length(shorten("病" * 100, 64)) <= 64
        ('abc', True)
        >>> shorten("病" * 100, 64) == shorten("病" * 100, 64) != shorten("病" * 99 + "x", 64)
        True
    """
    if byte_length(name) <= limit:
        return name
    room = limit - HASH_LEN - 1
    cut = name.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{cut}-{digest(name if whole is None else whole, HASH_LEN)}"


def file_stem(name: str) -> str:
    """What names the files of a case id or an output key: ``name`` itself when it fits in
    :data:`MAX_STEM_BYTES` bytes, else shortened with a hash of the whole (:func:`shorten`).

    Example:
        >>> file_stem("IMD002")
        'IMD002'
        >>> stem = file_stem("肝" * 100)
        >>> byte_length(stem) <= MAX_STEM_BYTES, stem.endswith(digest("肝" * 100))
        (True, True)
    """
    return shorten(name, MAX_STEM_BYTES)


def name_limit(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing
    parent) takes: ``PC_NAME_MAX``, 255 where it cannot be asked."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return NAME_MAX


def check_name_room(folder: Path, what: str) -> None:
    """Refuse a folder whose file system takes shorter names than medseg may write there.

    Raises:
        DataError: naming the folder, its limit and what to do.
    """
    limit = name_limit(folder)
    if limit < NAME_MAX:
        raise DataError(
            f"{what} {folder}: its file system takes names of at most {limit} bytes; medseg names files "
            f"of up to {NAME_MAX} bytes there (case ids and input names): use a folder on another "
            "file system"
        )


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refused when it would not be a direct child of ``folder``.

    Raises:
        DataError: ``name`` holds a path separator or resolves elsewhere.
    """
    path = Path(folder) / name
    if path.resolve().parent != Path(folder).resolve() or path.name != name:
        raise DataError(f"output name '{safe_name(name)}' would leave the output folder; refused")
    return path
