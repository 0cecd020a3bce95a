"""The data set's folder, checked before anything is read from it."""

from __future__ import annotations

from pathlib import Path

from medseg.errors import DataError


def data_root(root: str | Path) -> Path:
    """``data.root`` as a path.

    Raises:
        DataError: the folder does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' not found")
    return root
