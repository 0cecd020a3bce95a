"""Names of the metrics medseg logs to MLflow, made in one place and grouped with slashes, so the
MLflow UI shows them in sections: ``epoch/*`` per epoch, ``test/*`` and ``val/*`` per fold and
``cv/*`` per pipeline run.

The UI's run page draws one chart per metric in sections named by the metric's prefix, sorted by
name: the learning curves are ``epoch/*`` so that they come first on a fold's page, above the
single-value charts of the held-out scores.

Per epoch: ``epoch/train_loss``, ``epoch/val_dice``, ``epoch/lr``, ``epoch/seconds``. Per fold:
``val/best_dice``, ``val/best_epoch`` and ``test/<metric>/<class>`` (mean over the held-out cases;
distances also ``test/<metric>/<class>/n_infinite`` and ``.../capped``), with
``test/<metric>/mean``, the mean over classes, to rank on. Per pipeline run:
``cv/<metric>/mean`` and ``cv/<metric>/std`` (the class mean over folds) and
``cv/<metric>/<class>/mean`` and ``.../std``, of the results as ``predict`` delivers them (after the
post-processing adopted from cross-validation), and ``cv_raw/*`` the same before it, when one was;
``cv/uncertainty/auroc`` and ``.../spearman``, and ``cv/review/threshold``, ``.../catch_rate`` and
``.../flag_rate``: the review threshold ``predict`` uses, the share of held-out cases below Dice
0.9 it catches and the share of all held-out cases it flags.

Example:
    >>> epoch_metrics({"epoch": 3, "train_loss": 0.5, "lr": 0.01})
    {'epoch/train_loss': 0.5, 'epoch/lr': 0.01}
"""

from __future__ import annotations

from typing import Any

from medseg.evaluate.casewise import CLASS_MEAN
from medseg.evaluate.metrics import DISTANCE_METRICS, METRIC_NAMES

EPOCH_NAMES = {
    "train_loss": "epoch/train_loss",
    "lr": "epoch/lr",
    "seconds": "epoch/seconds",
    "val_dice": "epoch/val_dice",
}
HISTORY_METRIC = EPOCH_NAMES["train_loss"]  # logged every epoch: tells which epochs a run holds


def epoch_metrics(row: dict[str, float]) -> dict[str, float]:
    """One ``history.csv`` row as MLflow metrics (the epoch is the step, not a metric)."""
    return {EPOCH_NAMES[k]: v for k, v in row.items() if k in EPOCH_NAMES}


def best_metrics(best_epoch: int, best_val_dice: float) -> dict[str, float]:
    """The early-stopping choice of a fold."""
    return {"val/best_epoch": best_epoch, "val/best_dice": best_val_dice}


def fold_metrics(fold_summary: dict[str, Any]) -> dict[str, float]:
    """``test/*`` metrics of a fold from its summary per class, the class mean included
    (:func:`medseg.evaluate.casewise.class_summaries`)."""
    out: dict[str, float] = {}
    for name, stats in fold_summary.items():
        for m in METRIC_NAMES:
            out[f"test/{m}/{name}"] = float(stats[m]["mean"])
            if m in DISTANCE_METRICS and name != CLASS_MEAN:
                out[f"test/{m}/{name}/n_infinite"] = float(stats[m]["n_infinite"])
                out[f"test/{m}/{name}/capped"] = float(stats[m]["capped_mean"])
    return out


def cv_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """``cv/*`` metrics of a pipeline run from its summary's means over folds."""
    out: dict[str, float] = {}
    for name, per_metric in summary["fold_mean"].items():
        group = "" if name == CLASS_MEAN else f"/{name}"
        for m, stats in per_metric.items():
            out[f"cv/{m}{group}/mean"] = stats["mean"]
            out[f"cv/{m}{group}/std"] = stats["std"]
    for key in ("auroc", "spearman"):
        value = (summary.get("uncertainty") or {}).get(key)
        if value is not None:
            out[f"cv/uncertainty/{key}"] = value
    review = summary.get("review") or {}
    for key in ("threshold", "catch_rate", "flag_rate"):
        if isinstance(review.get(key), int | float):
            out[f"cv/review/{key}"] = float(review[key])
    return out


def cv_raw_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """``cv_raw/*``: the ``cv/*`` means over folds before the post-processing adopted from
    cross-validation (``summary["raw"]``); none when nothing was adopted."""
    raw = summary.get("raw")
    if not raw:
        return {}
    return {f"cv_raw/{k[3:]}": v for k, v in cv_metrics({"fold_mean": raw["fold_mean"]}).items()}
