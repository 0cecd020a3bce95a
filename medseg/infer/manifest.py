"""``manifest.csv``: one row per input of a ``medseg predict`` batch, rewritten atomically after each.

Rows carry UIDs, the input's ``ref`` (a hash of its path; the path itself only for NIfTI and
picture inputs or with ``--log-paths``), the status (``done``, ``skipped`` or ``failed``) and
why, the output files (relative to the output folder) and the seconds taken. A rerun reads it
back: an input whose row says ``done`` and whose outputs all exist is not done again. ``seconds``
is the sum of the input's stages: ``read_s`` and ``preprocess_s`` (in a worker process),
``infer_s`` (on the device) and ``write_s`` (back to the source grid, post-processing, files).
``uncertainty`` is the disagreement of the first fold model's test-time flips, the score the study
gave its held-out cases (:mod:`medseg.infer.uncertainty`), ``review`` ``yes`` when it is above
``predict.review_threshold`` (by default the study's), and ``fold_disagreement`` that of the fold
models; then come, per class, the predicted volume and connected components
(:mod:`medseg.infer.findings`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from medseg.io.atomic import write_text

FIELDS = [
    "key",
    "kind",
    "status",
    "reason",
    "modality",
    "study_uid",
    "series_uid",
    "sop_uid",
    "n_files",
    "ref",
    "source",
    "mask",
    "seg",
    "rtstruct",
    "overlay",
    "algorithm",
    "sent",
    "pacs_answer",
    "uncertainty",
    "review",
    "seconds",
    "read_s",
    "preprocess_s",
    "infer_s",
    "write_s",
]
OUTPUTS = ("mask", "seg", "rtstruct", "overlay", "probabilities")
NAME = "manifest.csv"


class Manifest:
    """The rows of ``manifest.csv``, those of an earlier run included, rewritten after each input.

    Args:
        out_dir: the output folder holding ``manifest.csv``.
    """

    def __init__(self, out_dir: Path, name: str = NAME, earlier: tuple[str, ...] = ()) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / name
        self.rows: dict[str, dict[str, Any]] = _read(self.path)
        self.fields = list(FIELDS)
        self.add_fields(self.rows.values())
        self.earlier: dict[str, dict[str, Any]] = {}
        for other in earlier:  # what the whole batch's manifest says was done
            self.earlier.update(_read(self.out_dir / other))
        self.earlier.update(self.rows)

    def finished_earlier(self, key: str, ref: str | None = None) -> dict[str, Any] | None:
        """The earlier row of ``key`` when it is done and its outputs are all still there, and, given
        ``ref``, when it was made from that input (``a.png`` removed and ``a.jpg`` added: both ``a``)."""
        row = self.earlier.get(key)
        if not row or row.get("status") != "done":
            return None
        if ref and row.get("ref") and row["ref"] != ref:
            return None
        if any(row.get(k) and not (self.out_dir / row[k]).is_file() for k in OUTPUTS):
            return None
        return row

    def record(self, row: dict[str, Any]) -> None:
        self.add_fields([row])
        self.rows[str(row["key"])] = {k: row.get(k, "") for k in self.fields}
        self.record_all()

    def add_fields(self, rows: Any) -> None:
        """Columns beyond :data:`FIELDS` (per-class volumes and components), in order of appearance."""
        for row in rows:
            self.fields += [k for k in row if k not in self.fields]

    def record_all(self) -> None:
        """Rewrite the file with every row."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows.values())
        write_text(self.path, buf.getvalue())


def _read(path: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    if path.is_file():
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("key"):
                    rows[row["key"]] = row
    return rows
