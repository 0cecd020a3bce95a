"""The cross-validation summary of a run folder, read back from the files the stages wrote.

Everything comes from ``fold_k/metrics.csv``, ``fold_k/history.csv``, ``datalist.json`` and
``timing.json`` (:mod:`medseg.run_dir`), so a summary can be rebuilt from any finished run.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.evaluate.casewise import read_metrics_csv
from medseg.evaluate.metrics import DEFINITIONS, METRIC_NAMES, summarize_rows
from medseg.run_dir import RunDir


def read_history(path: Path) -> list[dict[str, float]]:
    """Rows of a fold's ``history.csv``; empty when the file is absent."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def build_summary(run_dir: Path) -> dict[str, Any]:
    """Every metric per class: per fold, over all cases, and as a mean over folds.

    Args:
        run_dir: a run folder with at least one scored fold.

    Returns:
        The contents of ``summary.json``.

    Raises:
        MedsegError: the folder has no scored fold.
    """
    run = RunDir(run_dir)
    folds = run.scored_folds()
    if not folds:
        raise MedsegError(f"{run_dir}: no fold_*/metrics.csv found; run the pipeline first")
    rows_by_fold = {f.index: read_metrics_csv(f.metrics) for f in folds}
    labels = sorted({r["label"] for rows in rows_by_fold.values() for r in rows})
    summary: dict[str, Any] = {"run_dir": str(run_dir), "folds": {}, "overall": {}, "fold_mean": {}}
    for label in labels:
        key = f"label_{label}"
        per_fold = {}
        for k, rows in rows_by_fold.items():
            per_fold[k] = summarize_rows([r for r in rows if r["label"] == label])
            summary["folds"].setdefault(str(k), {})[key] = per_fold[k]
        all_rows = [r for rows in rows_by_fold.values() for r in rows if r["label"] == label]
        summary["overall"][key] = summarize_rows(all_rows)
        summary["fold_mean"][key] = {
            m: _mean_std([per_fold[k][m]["mean"] for k in per_fold]) for m in METRIC_NAMES
        }
    if run.datalist.is_file():
        data = json.loads(run.datalist.read_text())
        summary["n_cases"] = len(data.get("cases", []))
        summary["bad_cases"] = data.get("bad_cases", [])
    if run.timing.is_file():
        summary["timing"] = json.loads(run.timing.read_text())
    if run.postprocessing.is_file():
        summary["postprocessing"] = json.loads(run.postprocessing.read_text())
    summary["definitions"] = DEFINITIONS
    return summary


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean and std over the values that are not NaN (NaN when there are none)."""
    arr = np.asarray(values, float)
    arr = arr[~np.isnan(arr)]
    return {
        "mean": float(arr.mean()) if arr.size else math.nan,
        "std": float(arr.std()) if arr.size else math.nan,
    }
