"""The cross-validation summary of a run folder, read back from the files the stages wrote.

Everything comes from ``fold_k/metrics.csv``, ``fold_k/history.csv``, ``datalist.json``,
``timing.json`` and ``run_state.json`` (:mod:`medseg.run_dir`), so a summary can be rebuilt from
any finished run. Classes are keyed by their names; ``mean`` is the mean over classes.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.evaluate.casewise import CLASS_MEAN, Row, class_summaries, read_metrics_csv
from medseg.evaluate.metrics import DEFINITIONS, METRIC_NAMES, summarize
from medseg.evaluate.uncertainty import ranking
from medseg.io.readers import reader_by_name
from medseg.io.source import RASTER
from medseg.run_dir import RunDir


def read_history(path: Path) -> list[dict[str, float]]:
    """Rows of a fold's ``history.csv``; empty when the file is absent."""
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def fold_rows(run_dir: Path) -> dict[int, list[Row]]:
    """Per-case rows of every scored fold, by fold number."""
    return {f.index: read_metrics_csv(f.metrics) for f in RunDir(run_dir).scored_folds()}


def build_summary(run_dir: Path) -> dict[str, Any]:
    """Every metric per class and for the class mean: per fold, over all cases, as a mean over folds.

    Args:
        run_dir: a run folder with at least one scored fold.

    Returns:
        The contents of ``summary.json``.

    Raises:
        MedsegError: the folder has no scored fold.
    """
    run = RunDir(run_dir)
    rows_by_fold = fold_rows(run.root)
    if not rows_by_fold:
        raise MedsegError(f"{run_dir}: no fold_*/metrics.csv found; run the pipeline first")
    all_rows = [r for rows in rows_by_fold.values() for r in rows]
    per_fold = {str(k): class_summaries(rows) for k, rows in rows_by_fold.items()}
    overall = class_summaries(all_rows)
    names = [n for n in overall if n != CLASS_MEAN]
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "classes": names,
        "distance_unit": distance_unit(run),
        "folds": per_fold,
        "overall": overall,
        "fold_mean": {
            name: {m: mean_std([fold_value(per_fold[k][name][m]) for k in per_fold]) for m in METRIC_NAMES}
            for name in overall
        },
    }
    if any("uncertainty" in r for r in all_rows):
        summary["uncertainty"] = ranking(all_rows)
    if run.datalist.is_file():
        data = json.loads(run.datalist.read_text())
        summary["n_cases"] = len(data.get("cases", []))
        summary["bad_cases"] = data.get("bad_cases", [])
    for key, path in (("timing", run.timing), ("postprocessing", run.postprocessing)):
        if path.is_file():
            summary[key] = json.loads(path.read_text())
    summary["mlflow"] = mlflow_runs(run)
    summary["definitions"] = DEFINITIONS
    return summary


def distance_unit(run: RunDir) -> str:
    """``px`` when every image is a PNG/JPEG picture (no spacing), else ``mm``."""
    if not run.datalist.is_file():
        return "mm"
    cases = json.loads(run.datalist.read_text()).get("cases", [])
    kinds = [_kinds(c) for c in cases]
    pictures = bool(kinds) and all(k and all(x == RASTER for x in k) for k in kinds)
    return "px" if pictures else "mm"


def _kinds(case: dict[str, Any]) -> list[str]:
    """The reader kinds of a ``datalist.json`` case's images (older folders: by the suffix)."""
    if "images" in case:
        return [str(s.get("kind")) for s in case["images"]]
    by_name = reader_by_name(str(case.get("image", "")))
    return [by_name.kind if by_name else ""]


def mlflow_runs(run: RunDir) -> dict[str, Any]:
    """The MLflow run ids of the pipeline and of each fold, from ``run_state.json``."""
    state = run.read_state()
    folds = {k: v.get("run_id") for k, v in state.get("folds", {}).items() if v.get("run_id")}
    return {"parent_run_id": state.get("parent_run_id"), "fold_run_ids": folds}


def fold_value(stats: dict[str, Any]) -> float:
    """A fold's mean of a metric; infinite when every one of its cases was (one mask empty)."""
    if stats.get("n", 0) and stats.get("n_infinite", 0) == stats["n"]:
        return math.inf
    return float(stats["mean"])


def mean_std(values: list[float]) -> dict[str, float | int]:
    """:func:`medseg.evaluate.metrics.summarize` of the values that are not NaN (a fold without
    cases): mean and std over the finite ones, how many there were, how many were infinite."""
    return summarize([v for v in values if not math.isnan(v)])
