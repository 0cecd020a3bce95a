"""Names of the metrics medseg logs to MLflow, made in one place.

Per fold: ``best_epoch``, ``best_val_dice`` and ``test_<metric>[_label_<k>]`` (mean over the
held-out cases; distances also ``_n_infinite`` and ``_capped``). Per pipeline run:
``cv_<metric>_mean`` and ``cv_<metric>_std`` over folds. The class suffix is left out for a task
with one foreground class.

Example:
    >>> label_suffix(1, 2), label_suffix(2, 4)
    ('', '_label_2')
"""

from __future__ import annotations

from typing import Any

from medseg.evaluate.metrics import DISTANCE_METRICS, METRIC_NAMES, summarize_rows


def label_suffix(label: int, num_classes: int) -> str:
    """Metric-name suffix for a class: none for the one foreground class of a binary task."""
    return "" if num_classes == 2 else f"_label_{label}"


def fold_metrics(rows: list[dict[str, Any]], num_classes: int) -> dict[str, float]:
    """``test_*`` metrics of a fold from its per-case rows."""
    out: dict[str, float] = {}
    for label in range(1, num_classes):
        suffix = label_suffix(label, num_classes)
        stats = summarize_rows([r for r in rows if r["label"] == label])
        for m in METRIC_NAMES:
            out[f"test_{m}{suffix}"] = float(stats[m]["mean"])
            if m in DISTANCE_METRICS:
                out[f"test_{m}_n_infinite{suffix}"] = float(stats[m]["n_infinite"])
                out[f"test_{m}_capped{suffix}"] = float(stats[m]["capped_mean"])
    return out


def cv_metrics(summary: dict[str, Any], num_classes: int) -> dict[str, float]:
    """``cv_*`` metrics of a pipeline run from its summary's means over folds."""
    out: dict[str, float] = {}
    for label_key, per_metric in summary["fold_mean"].items():
        suffix = label_suffix(int(label_key.removeprefix("label_")), num_classes)
        for m, stats in per_metric.items():
            out[f"cv_{m}_mean{suffix}"] = stats["mean"]
            out[f"cv_{m}_std{suffix}"] = stats["std"]
    return out
