"""How well the uncertainty score ranks the held-out cases that came out worst.

``medseg run`` scores every held-out case with the disagreement of its test-time flips
(:mod:`medseg.infer.uncertainty`). Over all folds' cases, the AUROC of that score for telling the
cases with a class-mean Dice below ``threshold`` (0.9) from the rest, and the Spearman correlation
of score and Dice (negative when the score ranks well), say how far ``predict``'s ``review`` flag
can be trusted.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medseg.evaluate.casewise import Row, case_means

DICE_THRESHOLD = 0.9


def ranking(rows: list[Row], threshold: float = DICE_THRESHOLD) -> dict[str, Any]:
    """AUROC and Spearman correlation of the ``uncertainty`` of cases against their class-mean Dice.

    Args:
        rows: per-case, per-class rows over every fold, with ``uncertainty``.
        threshold: a case whose class-mean Dice is below it counts as one to flag.

    Returns:
        ``n``, ``n_low`` (cases below the threshold), ``threshold``, ``auroc`` and ``spearman``
        (None, with a ``reason``, when they cannot be computed).

    Example:
        >>> rows = [{"case": c, "label": 1, "dice": d, "uncertainty": u}
        ...         for c, d, u in [("a", 0.95, 0.01), ("b", 0.6, 0.3), ("c", 0.92, 0.05)]]
        >>> ranking(rows)["auroc"]
        1.0
    """
    cases = [r for r in case_means(rows) if math.isfinite(float(r.get("uncertainty", math.nan)))]
    dice = np.array([r["dice"] for r in cases], float)
    score = np.array([r["uncertainty"] for r in cases], float)
    low = dice < threshold
    out: dict[str, Any] = {"n": len(cases), "n_low": int(low.sum()), "threshold": threshold}
    out.update(auroc=None, spearman=None)
    if len(cases) < 3:
        return {**out, "reason": f"{len(cases)} case(s) with a score; at least 3 are needed"}
    from scipy.stats import spearmanr

    rho = spearmanr(score, dice).statistic
    out["spearman"] = None if not np.isfinite(rho) else float(rho)
    if low.all() or not low.any():
        side = "every" if low.all() else "no"
        return {**out, "reason": f"{side} case has a Dice below {threshold}: AUROC is undefined"}
    from sklearn.metrics import roc_auc_score

    out["auroc"] = float(roc_auc_score(low, score))
    return out
