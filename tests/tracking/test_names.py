"""MLflow metric names: grouped with slashes and named by class."""

from __future__ import annotations

import math

import pytest

from medseg.evaluate.casewise import class_summaries
from medseg.tracking.names import best_metrics, cv_metrics, epoch_metrics, fold_metrics


def _row(case: str, label: int, name: str, dice: float, hd95: float) -> dict:
    overlap = {"dice": dice, "iou": dice, "nsd": dice, "jaccard_thresholded": dice}
    distance = {"hd95": hd95, "hd": hd95, "assd": hd95, "diagonal": 100.0}
    return {"case": case, "label": label, "class": name, **overlap, **distance}


def test_epoch_and_fold_metrics_are_grouped_and_named() -> None:
    assert epoch_metrics({"epoch": 2, "train_loss": 0.4, "val_dice": 0.8, "lr": 0.01, "seconds": 3.0}) == {
        "epoch/train_loss": 0.4,
        "epoch/val_dice": 0.8,
        "epoch/lr": 0.01,
        "epoch/seconds": 3.0,
    }
    rows = [_row("a", 1, "liver", 0.9, 2.0), _row("a", 2, "spleen", 0.5, math.inf)]
    rows += [_row("b", 1, "liver", 0.7, 4.0), _row("b", 2, "spleen", 0.7, 6.0)]
    m = fold_metrics(class_summaries(rows))
    assert m["test/dice/liver"] == pytest.approx(0.8) and m["test/dice/spleen"] == pytest.approx(0.6)
    assert m["test/dice/mean"] == pytest.approx(0.7)  # the mean over classes, to rank on
    # the UI's run page sorts its chart sections (the name before the last slash) by name: the
    # learning curves come before every single-value chart of the fold
    every_epoch_value = {"train_loss": 1.0, "val_dice": 1.0, "lr": 1.0, "seconds": 1.0}
    curves = {k.rsplit("/", 1)[0] for k in epoch_metrics(every_epoch_value)}
    singles = {k.rsplit("/", 1)[0] for k in [*m, *best_metrics(3, 0.8)]}
    assert curves == {"epoch"} and max(curves) < min(singles)
    assert m["test/hd95/spleen/n_infinite"] == 1 and m["test/hd95/spleen/capped"] == pytest.approx(53.0)
    assert not [k for k in m if "label" in k or "_" in k.split("/")[0]]


def test_cv_metrics_name_the_class_mean_and_each_class() -> None:
    summary = {
        "fold_mean": {
            "liver": {"dice": {"mean": 0.8, "std": 0.1}},
            "mean": {"dice": {"mean": 0.7, "std": 0.05}},
        },
        "uncertainty": {"auroc": 0.9, "spearman": -0.6},
        "review": {"threshold": 0.04, "catch_rate": 0.8, "flag_rate": 0.25, "source": "study"},
    }
    assert cv_metrics(summary) == {
        "cv/dice/liver/mean": 0.8,
        "cv/dice/liver/std": 0.1,
        "cv/dice/mean": 0.7,
        "cv/dice/std": 0.05,
        "cv/uncertainty/auroc": 0.9,
        "cv/uncertainty/spearman": -0.6,
        "cv/review/threshold": 0.04,
        "cv/review/catch_rate": 0.8,
        "cv/review/flag_rate": 0.25,
    }
    summary["review"] = {"threshold": None, "reason": "no held-out case has a Dice below 0.9"}
    assert not [k for k in cv_metrics(summary) if k.startswith("cv/review/")]
