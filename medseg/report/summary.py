"""The cross-validation summary of a run folder, read back from the files the stages wrote.

Everything comes from ``fold_k/metrics.csv``, ``fold_k/history.csv``, ``datalist.json``,
``timing.json``, ``postprocessing.json``, ``review.json`` and ``run_state.json``
(:mod:`medseg.run_dir`), so a summary can be rebuilt from any finished run; a damaged file is an
error that names it (:mod:`medseg.report.reading`). Classes are keyed by their names; ``mean`` is
the mean over classes. The figures are those of the results as ``medseg predict`` delivers them:
after the post-processing adopted from cross-validation, with those before it under ``raw``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medseg.errors import DataError, MedsegError
from medseg.evaluate.casewise import CLASS_MEAN, Row, class_summaries
from medseg.evaluate.metrics import DEFINITIONS, METRIC_NAMES, summarize
from medseg.evaluate.uncertainty import ranking
from medseg.io.readers import reader_by_name
from medseg.io.source import RASTER
from medseg.report.reading import read_fold_metrics, read_json
from medseg.run_dir import RunDir


def fold_rows(run_dir: Path, raw: bool = False) -> dict[int, list[Row]]:
    """Per-case rows of every scored fold, by fold number (``raw``: before the post-processing
    adopted from cross-validation, ``metrics_raw.csv``).

    Raises:
        DataError: a damaged file, named with what is wrong.
    """
    folds = RunDir(run_dir).scored_folds()
    return {f.index: read_fold_metrics(f.metrics_raw if raw else f.metrics) for f in folds}


def figures(rows_by_fold: dict[int, list[Row]]) -> dict[str, Any]:
    """Every metric per class and for the class mean: per fold, over all cases, as a mean over folds."""
    all_rows = [r for rows in rows_by_fold.values() for r in rows]
    per_fold = {str(k): class_summaries(rows) for k, rows in rows_by_fold.items()}
    overall = class_summaries(all_rows)
    return {
        "folds": per_fold,
        "overall": overall,
        "fold_mean": {
            name: {m: mean_std([fold_value(per_fold[k][name][m]) for k in per_fold]) for m in METRIC_NAMES}
            for name in overall
        },
    }


def build_summary(run_dir: Path) -> dict[str, Any]:
    """Every metric per class and for the class mean: per fold, over all cases, as a mean over folds;
    before post-processing too (``raw``) when one was adopted and changed the results.

    Args:
        run_dir: a run folder with at least one scored fold.

    Returns:
        The contents of ``summary.json``.

    Raises:
        MedsegError: the folder has no scored fold; DataError: a damaged file, named.
    """
    run = RunDir(run_dir)
    rows_by_fold = fold_rows(run.root)
    if not rows_by_fold:
        raise MedsegError(f"{run_dir}: no fold_*/metrics.csv found; run the pipeline first")
    all_rows = [r for rows in rows_by_fold.values() for r in rows]
    summary: dict[str, Any] = {"run_dir": str(run_dir), "distance_unit": distance_unit(run)}
    summary.update(figures(rows_by_fold))
    summary["classes"] = [n for n in summary["overall"] if n != CLASS_MEAN]
    if any("uncertainty" in r for r in all_rows):
        summary["uncertainty"] = ranking(all_rows)
    if run.datalist.is_file():
        data = read_json(run.datalist, "run `medseg run` on the pipeline again to rewrite it")
        cases, bad = data.get("cases"), data.get("bad_cases")
        summary["n_cases"] = len(cases) if isinstance(cases, list) else "?"
        summary["bad_cases"] = [b for b in bad if isinstance(b, dict)] if isinstance(bad, list) else []
    for key, path in (("timing", run.timing), ("postprocessing", run.postprocessing), ("review", run.review)):
        if path.is_file():
            summary[key] = read_json(path, "run the study's end again (`medseg run PIPELINE --stage report`)")
    raw = raw_figures(run, summary.get("postprocessing"))
    if raw is not None:
        summary["raw"] = raw
    summary["mlflow"] = mlflow_runs(run)
    summary["definitions"] = DEFINITIONS
    return summary


def raw_figures(run: RunDir, postprocessing: dict[str, Any] | None) -> dict[str, Any] | None:
    """The figures before the adopted post-processing, when one was adopted and every scored fold
    kept its raw metrics; None otherwise."""
    if not postprocessing or not postprocessing.get("value"):
        return None
    if not all(f.metrics_raw.is_file() for f in run.scored_folds()):
        return None
    out = figures(fold_rows(run.root, raw=True))
    out["what"] = "before post-processing (" + str(postprocessing.get("reason", "")) + ")"
    return out


def distance_unit(run: RunDir) -> str:
    """``px`` when every image is a PNG/JPEG picture (no spacing), else ``mm``."""
    if not run.datalist.is_file():
        return "mm"
    cases = read_json(run.datalist, "run `medseg run` on the pipeline again to rewrite it").get("cases")
    cases = cases if isinstance(cases, list) else []
    kinds = [_kinds(c) if isinstance(c, dict) else [""] for c in cases]
    pictures = bool(kinds) and all(k and all(x == RASTER for x in k) for k in kinds)
    return "px" if pictures else "mm"


def _kinds(case: dict[str, Any]) -> list[str]:
    """The reader kinds of a ``datalist.json`` case's images (older folders: by the suffix)."""
    if isinstance(case.get("images"), list):
        return [str(s.get("kind")) if isinstance(s, dict) else "" for s in case["images"]]
    by_name = reader_by_name(str(case.get("image", "")))
    return [by_name.kind if by_name else ""]


def mlflow_runs(run: RunDir) -> dict[str, Any]:
    """The MLflow run ids of the pipeline and of each fold, from ``run_state.json``."""
    state = run_state(run)
    folds = {k: v.get("run_id") for k, v in state["folds"].items() if isinstance(v, dict) and v.get("run_id")}
    return {"parent_run_id": state.get("parent_run_id"), "fold_run_ids": folds}


def run_state(run: RunDir) -> dict[str, Any]:
    """``run_state.json`` (empty when absent), checked to be an object with a ``folds`` object."""
    remedy = "delete it: the report then links no MLflow run"
    if not run.state_file.is_file():
        return {"parent_run_id": None, "folds": {}}
    state = read_json(run.state_file, remedy)
    if not isinstance(state.get("folds", {}), dict):
        raise DataError(f"{run.state_file}: 'folds' is not an object; {remedy}")
    return {"folds": {}, **state}


def fold_value(stats: dict[str, Any]) -> float:
    """A fold's mean of a metric; infinite when every one of its cases was (one mask empty)."""
    if stats.get("n", 0) and stats.get("n_infinite", 0) == stats["n"]:
        return math.inf
    return float(stats["mean"])


def mean_std(values: list[float]) -> dict[str, float | int]:
    """:func:`medseg.evaluate.metrics.summarize` of the values that are not NaN (a fold without
    cases): mean and std over the finite ones, how many there were, how many were infinite."""
    return summarize([v for v in values if not math.isnan(v)])
