"""CSV tables that users write (``metadata.csv``, the cases table): read as UTF-8 with or without
a byte-order mark, column names and cells stripped; a clear DataError names the file otherwise."""

from __future__ import annotations

import csv
from pathlib import Path

from medseg.errors import DataError

Row = dict[str, str]


def read_rows(path: str | Path) -> tuple[list[str], list[Row]]:
    """(column names, rows) of a CSV file.

    Spreadsheet programs save "CSV UTF-8" with a byte-order mark, which would otherwise stick to
    the first column's name; it is dropped.

    Args:
        path: the CSV file.

    Returns:
        The stripped column names, and each row as {column: stripped cell} (empty cells as "").

    Raises:
        DataError: the file is not UTF-8 text or not a CSV table.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            names = [n.strip() for n in reader.fieldnames or [] if n]
            rows = [
                {k.strip(): (v or "").strip() for k, v in r.items() if isinstance(k, str)} for r in reader
            ]
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8 (in a spreadsheet: 'CSV UTF-8')"
        ) from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV table ({err})") from None
    return names, rows
