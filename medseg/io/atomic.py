"""Atomic file writes: everything goes to a temporary name in the same folder, then is renamed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"  # a temporary file is ".NAME.PID.tmp" beside NAME


def remove_temporaries(folder: str | Path, pid: int) -> None:
    """Remove the temporary files that process ``pid`` left in ``folder`` (it was killed while
    writing: its ``finally`` never ran); the files it renamed into place are not touched."""
    for tmp in Path(folder).glob(f".*.{pid}{TEMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds.

    Args:
        path: the file to write.

    Yields:
        The temporary path to write to.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "out.csv"
        >>> with atomic_path(out) as tmp:
        ...     _ = tmp.write_text("a,b\\n")
        ...     out.exists()
        False
        >>> out.read_text()
        'a,b\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")
