"""How well the uncertainty score finds the held-out cases that came out worst, and the review
threshold ``medseg predict`` uses.

``medseg run`` scores every held-out case with the disagreement of its model's test-time flips
(:mod:`medseg.infer.uncertainty`), the same score ``predict`` gives each input from its first fold
model's flips, so a threshold chosen on held-out cases carries over to new inputs. A case is bad
when its class-mean Dice is below ``dice_below`` (0.9).

Ranking (:func:`ranking`): the AUROC of the score for telling bad cases from the rest, with its
Hanley-McNeil standard error, and the Spearman correlation of score and Dice (negative when the
score ranks well). The AUROC is given only with at least :data:`MIN_PER_SIDE` (5) cases on each
side: for a true AUROC of 0.8 among 50 good cases, the standard error is 0.27 with 1 bad case, 0.16
with 3 and 0.12 with 5, so only from about 5 does the 95% interval (0.56-1) leave out chance (0.5).
Below that the counts are given and the AUROC is not.

Threshold (:func:`review_rule`): the score of the bad case that completes ``catch`` (80%) of the bad
cases, counted from the highest score down; the threshold is halfway between it and the next lower
score of any case, so ``predict``'s flag (score above the threshold) catches at least that share of
the held-out bad cases. The share of bad cases caught and of all cases flagged are given with it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medseg.evaluate.casewise import Row, case_means

DICE_THRESHOLD = 0.9
CATCH = 0.8
MIN_PER_SIDE = 5


def scored_cases(rows: list[Row]) -> tuple[np.ndarray, np.ndarray]:
    """(class-mean Dice, uncertainty) of each case with a finite score."""
    cases = [r for r in case_means(rows) if math.isfinite(float(r.get("uncertainty", math.nan)))]
    return np.array([r["dice"] for r in cases], float), np.array([r["uncertainty"] for r in cases], float)


def auroc_se(auroc: float, n_pos: int, n_neg: int) -> float:
    """Hanley and McNeil's (1982) standard error of an AUROC from ``n_pos`` and ``n_neg`` cases.

    Example:
        >>> round(auroc_se(0.8, 5, 50), 3)
        0.122
    """
    q1, q2 = auroc / (2 - auroc), 2 * auroc**2 / (1 + auroc)
    var = auroc * (1 - auroc) + (n_pos - 1) * (q1 - auroc**2) + (n_neg - 1) * (q2 - auroc**2)
    return math.sqrt(max(var, 0.0) / (n_pos * n_neg))


def ranking(rows: list[Row], threshold: float = DICE_THRESHOLD) -> dict[str, Any]:
    """AUROC and Spearman correlation of the ``uncertainty`` of cases against their class-mean Dice.

    Args:
        rows: per-case, per-class rows over every fold, with ``uncertainty``.
        threshold: a case whose class-mean Dice is below it counts as one to flag.

    Returns:
        ``n``, ``n_low`` (cases below the threshold), ``n_high``, ``threshold``, ``auroc`` with
        ``auroc_se``, and ``spearman`` (None, with a ``reason``, when they cannot be given).

    Example:
        >>> rows = [{"case": str(i), "label": 1, "dice": 0.5 + i / 20, "uncertainty": 1 - i / 10}
        ...         for i in range(10)]
        >>> out = ranking(rows)
        >>> out["n_low"], out["n_high"], out["auroc"]
        (8, 2, None)
        >>> out["reason"]
        '8 case(s) below Dice 0.9 and 2 at or above it: an AUROC needs at least 5 on each side'
    """
    dice, score = scored_cases(rows)
    low = dice < threshold
    n_low, n_high = int(low.sum()), int((~low).sum())
    out: dict[str, Any] = {"n": len(dice), "n_low": n_low, "n_high": n_high, "threshold": threshold}
    out.update(auroc=None, auroc_se=None, spearman=None)
    if len(dice) < 3:
        return {**out, "reason": f"{len(dice)} case(s) with a score; at least 3 are needed"}
    from scipy.stats import spearmanr

    rho = spearmanr(score, dice).statistic
    out["spearman"] = None if not np.isfinite(rho) else float(rho)
    if min(n_low, n_high) < MIN_PER_SIDE:
        return {
            **out,
            "reason": f"{n_low} case(s) below Dice {threshold} and {n_high} at or above it: an AUROC "
            f"needs at least {MIN_PER_SIDE} on each side",
        }
    from sklearn.metrics import roc_auc_score

    out["auroc"] = float(roc_auc_score(low, score))
    out["auroc_se"] = auroc_se(out["auroc"], n_low, n_high)
    return out


def study_threshold(score: np.ndarray, low: np.ndarray, catch: float) -> float:
    """The threshold whose flag (score above it) catches ``catch`` of the ``low`` cases: halfway
    between the score completing that share and the next lower score of any case.

    Example:
        >>> s = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
        >>> study_threshold(s, np.array([1, 0, 1, 0, 1, 0], bool), 0.6)
        0.25
    """
    bad = np.sort(score[low])[::-1]
    kth = float(bad[max(1, math.ceil(catch * len(bad) - 1e-9)) - 1])
    lower = score[score < kth]
    return (kth + float(lower.max())) / 2 if lower.size else kth / 2


def flag_rates(score: np.ndarray, low: np.ndarray, threshold: float) -> dict[str, Any]:
    """How many bad cases a threshold catches and how many cases it flags, and their shares."""
    flagged = score > threshold
    caught, n_low = int((flagged & low).sum()), int(low.sum())
    return {
        "caught": caught,
        "flagged": int(flagged.sum()),
        "catch_rate": caught / n_low if n_low else None,
        "flag_rate": float(flagged.mean()) if flagged.size else None,
    }


def review_rule(
    rows: list[Row],
    set_threshold: float | None = None,
    dice_below: float = DICE_THRESHOLD,
    catch: float = CATCH,
) -> dict[str, Any]:
    """The review threshold chosen from the held-out cases, and the one ``predict`` uses with its
    catch rate and flag rate in cross-validation.

    Args:
        rows: per-case, per-class rows over every fold, with ``uncertainty``.
        set_threshold: ``predict.review_threshold`` when the user set it (it is then used).
        dice_below: a case whose class-mean Dice is below it is one to flag.
        catch: the share of those the chosen threshold catches.

    Returns:
        ``study_threshold`` (None with a ``reason`` when no case has a score or none is bad),
        ``threshold`` (what ``predict`` uses, None when there is none), its ``source``, ``n``,
        ``n_low``, ``caught``, ``flagged``, ``catch_rate`` and ``flag_rate``.
    """
    dice, score = scored_cases(rows)
    low = dice < dice_below
    out: dict[str, Any] = {"dice_below": dice_below, "catch": catch, "n": len(dice), "n_low": int(low.sum())}
    chosen = None
    if not len(dice):
        out["reason"] = "no held-out case has an uncertainty score (evaluate.uncertainty: false)"
    elif not low.any():
        out["reason"] = f"no held-out case has a Dice below {dice_below}: no bad case to choose from"
    else:
        chosen = round(study_threshold(score, low, catch), 6)
    out["study_threshold"] = chosen
    used, source = (
        (set_threshold, "predict.review_threshold") if set_threshold is not None else (chosen, "study")
    )
    out.update(threshold=used, source=source if used is not None else "none")
    if used is not None and len(dice):
        out.update(flag_rates(score, low, used))
    return out
