"""The files a report is built from, read back and checked.

A damaged file (cut short, emptied, edited by hand, not JSON, a word where a number belongs) is a
:class:`~medseg.errors.DataError` that names the file, the line and what is wrong, and says how to
get it back, never an unexpected error from deep inside a parser.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from medseg.errors import DataError
from medseg.evaluate.casewise import TEXT_FIELDS, Row, read_metrics_csv

REQUIRED_COLUMNS = ("case", "label", "dice")
RESCORE = (
    "delete it and run the study again (`medseg run PIPELINE`): the fold's held-out cases are "
    "scored again from its checkpoint"
)


def read_text(path: Path, remedy: str) -> str:
    """A file's UTF-8 text; DataError naming it when it cannot be read or is not text."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (a binary or damaged file); {remedy}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err}); {remedy}") from None


def read_json(path: Path, remedy: str) -> dict[str, Any]:
    """A JSON object from ``path``.

    Args:
        path: the file.
        remedy: what the user can do, ending the message of an error.

    Raises:
        DataError: the file is unreadable, not JSON, or holds something other than an object.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "x.json"
        >>> _ = p.write_text('{"a": 1')
        >>> try:
        ...     read_json(p, "rewrite it")
        ... except DataError as err:
        ...     print(str(err).split(": ", 1)[1])
        not valid JSON (Expecting ',' delimiter at line 1, column 8); rewrite it
    """
    text = read_text(path, remedy)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); {remedy}"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: nested too deeply to be read; {remedy}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: holds a JSON {type(data).__name__}, not an object; {remedy}")
    return data


def _check_value(path: Path, line: int, column: str, value: str) -> None:
    if column == "label":
        if not value.strip().lstrip("-").isdigit():
            raise DataError(f"{path}, line {line}: label {value!r} is not a whole number; {RESCORE}")
        return
    try:
        float(value)
    except ValueError:
        raise DataError(f"{path}, line {line}: {column} {value!r} is not a number; {RESCORE}") from None


def read_fold_metrics(path: Path) -> list[Row]:
    """The rows of a fold's ``metrics.csv``, every field checked first.

    Raises:
        DataError: naming the file (and line): empty, a header without cases, a required column
            missing, a row cut short or too long, a case without an id, a word where a number
            belongs.
    """
    text = read_text(path, RESCORE)
    try:
        table = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV file ({err}); {RESCORE}") from None
    if not table:
        raise DataError(f"{path}: empty (no header, no case); {RESCORE}")
    header, body = table[0], table[1:]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} in its header; {RESCORE}")
    if not body:
        raise DataError(f"{path}: a header and no case (scoring stopped before any was written); {RESCORE}")
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            cut = " (the file was cut short?)" if len(row) < len(header) else ""
            raise DataError(
                f"{path}, line {line}: {len(row)} fields, the header has {len(header)}{cut}; {RESCORE}"
            )
        for column, value in zip(header, row, strict=True):
            if column == "case" and not value.strip():
                raise DataError(f"{path}, line {line}: a row without a case id; {RESCORE}")
            if column not in TEXT_FIELDS and value != "":
                _check_value(path, line, column, value)
    return read_metrics_csv(path)


def read_history(path: Path) -> list[dict[str, float]]:
    """Rows of a fold's ``history.csv`` (empty when the file is absent), every value a number.

    Raises:
        DataError: a value that is not a number, naming the file, line and column.
    """
    if not Path(path).is_file():
        return []
    text = read_text(path, "delete it: the report then draws no learning curve for this fold")
    rows = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        out = {}
        for key, value in row.items():
            if value in ("", None) or key is None:
                continue
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}, line {line}: {key} {value!r} is not a number; delete the file: the "
                    "report then draws no learning curve for this fold"
                ) from None
        rows.append(out)
    return rows


def number(value: Any) -> float | None:
    """``value`` as a finite or infinite float, None when it is not a number (a damaged file)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(float(value)) else float(value)
