"""The report's plots, each a base64 PNG or, when it cannot be drawn, the reason why.

Per-class boxplots with every case drawn, Dice against the reference volume, a Bland-Altman plot
of predicted against reference volume, learning curves with the best epoch marked, and the
uncertainty score against Dice. Every figure is at most 12 inches (1080 px) wide; the page scales
it down further on a narrow window.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg.evaluate.casewise import Row, class_name
from medseg.report.reading import read_history
from medseg.run_dir import FoldDir

WIDTH = 12.0  # inches at 90 dpi: 1080 px


@dataclass
class Figure:
    """A plot as a base64 PNG, or the reason it is not drawn."""

    png: str | None = None
    reason: str | None = None


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> Figure:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return Figure(png=base64.b64encode(buf.getvalue()).decode())


def _by_class(rows: list[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in sorted(rows, key=lambda r: int(r["label"])):
        out.setdefault(class_name(r), []).append(r)
    return out


def boxplots(rows_by_fold: dict[int, list[Row]], unit: str) -> Figure:
    """Dice, Surface Dice and HD95 per class and fold: boxes with every case drawn as a point."""
    plt = _plt()
    names = list(_by_class([r for rows in rows_by_fold.values() for r in rows]))
    metrics = [("dice", "Dice"), ("nsd", "Surface Dice"), ("hd95", f"HD95 ({unit}, finite)")]
    fig, axes = plt.subplots(len(names), 3, figsize=(WIDTH, 2.8 * len(names)), squeeze=False)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        for j, (m, title) in enumerate(metrics):
            ax = axes[i, j]
            data = []
            for rows in rows_by_fold.values():
                v = np.array([r[m] for r in rows if class_name(r) == name], float)
                data.append(v[np.isfinite(v)])
            ax.boxplot(data, tick_labels=[str(k) for k in rows_by_fold], showfliers=False)
            for pos, values in enumerate(data, start=1):
                ax.scatter(pos + rng.uniform(-0.15, 0.15, values.size), values, s=8, alpha=0.5, color="C0")
            ax.set_title(f"{name}: {title}", fontsize=9)
            ax.set_xlabel("fold", fontsize=8)
    fig.tight_layout()
    return png(fig)


def volume_unit(unit: str, spatial_dims: int) -> tuple[str, float]:
    """The unit volumes are shown in and the factor from ``metrics.csv``'s (mm³, mm², px)."""
    if unit == "px":
        return "px", 1.0
    return ("mL", 1e-3) if spatial_dims == 3 else ("mm²", 1.0)


def volume_plots(rows: list[Row], unit: str, spatial_dims: int) -> Figure:
    """Per class: Dice against reference volume, and a Bland-Altman plot of predicted against
    reference volume (difference against mean, with the mean difference and limits of agreement)."""
    plt = _plt()
    rows = [r for r in rows if "ref_volume" in r]
    if not rows:
        return Figure(reason="metrics.csv holds no volumes (written by an older medseg); rerun evaluation")
    vunit, factor = volume_unit(unit, spatial_dims)
    classes = _by_class(rows)
    fig, axes = plt.subplots(len(classes), 2, figsize=(WIDTH * 0.8, 3.2 * len(classes)), squeeze=False)
    for i, (name, group) in enumerate(classes.items()):
        ref = np.array([r["ref_volume"] for r in group], float) * factor
        pred = np.array([r["pred_volume"] for r in group], float) * factor
        dice = np.array([r["dice"] for r in group], float)
        ax = axes[i, 0]
        ax.scatter(ref, dice, s=10, alpha=0.6)
        if (ref > 0).all() and ref.max() > 10 * ref.min():
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a short axis
        else:
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.set_xlabel(f"reference volume ({vunit})", fontsize=8)
        ax.set_ylabel("Dice", fontsize=8)
        ax.set_title(f"{name}: Dice against reference volume", fontsize=9)
        ax = axes[i, 1]
        mean, diff = (ref + pred) / 2, pred - ref
        bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if diff.size > 1 else 0.0
        ax.scatter(mean, diff, s=10, alpha=0.6)
        for y, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
            ax.axhline(y, color="grey", linestyle=style, linewidth=1)
        ax.ticklabel_format(axis="both", style="sci", scilimits=(-3, 4))
        ax.set_xlabel(f"mean of predicted and reference ({vunit})", fontsize=8)
        ax.set_ylabel(f"predicted - reference ({vunit})", fontsize=8)
        ax.set_title(f"{name}: Bland-Altman, bias {bias:.3g}, limits ±{1.96 * sd:.3g}", fontsize=9)
    fig.tight_layout()
    return png(fig)


def learning_curves(folds: list[FoldDir]) -> Figure:
    """Training loss and early-stopping Dice per epoch and fold, the best epoch marked."""
    histories = {f.name: read_history(f.history) for f in folds}
    histories = {k: h for k, h in histories.items() if h}
    if not histories:
        return Figure(reason="no fold has a history.csv yet: no epoch has finished")
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(WIDTH * 0.8, 3.2))
    with_val = False
    for i, (name, hist) in enumerate(histories.items()):
        colour = f"C{i % 10}"
        ax1.plot([h["epoch"] for h in hist], [h["train_loss"] for h in hist], ".-", label=name, color=colour)
        val = [h for h in hist if "val_dice" in h and math.isfinite(h["val_dice"])]
        if val:
            with_val = True
            best = max(val, key=lambda h: h["val_dice"])
            ax2.plot([h["epoch"] for h in val], [h["val_dice"] for h in val], ".-", label=name, color=colour)
            ax2.plot([best["epoch"]], [best["val_dice"]], marker="*", markersize=12, color=colour)
    ax1.set_title("training loss", fontsize=9)
    ax2.set_title("early-stopping Dice (★ best epoch, whose weights are kept)", fontsize=9)
    if not with_val:
        ax2.text(
            0.5,
            0.5,
            "no early-stopping cases (train.val_fraction: 0):\nthe last epoch is kept",
            ha="center",
            va="center",
            transform=ax2.transAxes,
            fontsize=9,
        )
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=8)
        if ax.get_lines():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def uncertainty_plot(means: list[Row], ranking: dict[str, Any]) -> Figure:
    """Each held-out case's uncertainty score against its class-mean Dice."""
    pts = [
        (r["uncertainty"], r["dice"]) for r in means if math.isfinite(float(r.get("uncertainty", math.nan)))
    ]
    if not pts:
        return Figure(reason="no held-out case has an uncertainty score (evaluate.uncertainty: false)")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH * 0.5, 3.4))
    score, dice = np.array(pts).T
    low = dice < ranking["threshold"]
    ax.scatter(score[~low], dice[~low], s=10, alpha=0.6, label=f"Dice ≥ {ranking['threshold']}")
    ax.scatter(score[low], dice[low], s=14, alpha=0.8, color="C3", label=f"Dice < {ranking['threshold']}")
    ax.set_xlabel("uncertainty (test-time flip disagreement)", fontsize=8)
    ax.set_ylabel("Dice (mean over classes)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
