"""Cross-validation report of a run folder: ``summary.json``, ``report.md`` and ``report.html``.

Everything is read back from the files the stages wrote (``fold_k/metrics.csv``,
``fold_k/history.csv``, ``fold_k/overlays/``, ``datalist.json``), so a report can be rebuilt
from any finished run. The HTML page is self-contained: plots and overlays are embedded.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluate.casewise import read_metrics_csv
from medseg.evaluate.metrics import DISTANCE_METRICS, HIGHER_IS_BETTER, METRIC_NAMES, summarize_rows
from medseg.io.atomic import write_json, write_text

DEFINITIONS = {
    "dice": "2|P∩R| / (|P|+|R|); 1 when both masks are empty, 0 when exactly one is",
    "iou": "|P∩R| / |P∪R|; same empty-mask rules as Dice",
    "jaccard_thresholded": "ISIC 2018: IoU when IoU >= 0.65 (evaluate.jaccard_threshold), else 0",
    "hd95": "the larger of the two directed 95th-percentile surface distances, prediction to reference "
    "and reference to prediction (MONAI and DeepMind surface-distance definition; MedPy's pooled "
    "percentile is a different, lower number when a false-positive blob is present)",
    "hd": "the larger of the two directed maximum surface distances (Hausdorff distance)",
    "assd": "mean of the surface distances of both directions pooled (average symmetric surface distance)",
    "nsd": "Surface Dice at the tolerance of evaluate.nsd_tolerance, DeepMind surfel definition (MONAI "
    "compute_surface_dice with use_subvoxels=True); 1 when both masks are empty, 0 when exactly one is",
    "distances": "in mm for DICOM and NIfTI, in pixels for PNG/JPEG; 0 when both masks are empty, "
    "infinite when exactly one is: means are over finite cases, the infinite ones are counted, and "
    "'capped' is the mean with each infinite distance replaced by the image diagonal",
}


def fold_dirs(run_dir: Path) -> list[Path]:
    return sorted(
        (p for p in run_dir.glob("fold_*") if (p / "metrics.csv").is_file()),
        key=lambda p: int(p.name.split("_")[1]),
    )


def read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(fh)]


def build_summary(run_dir: Path) -> dict[str, Any]:
    folds = fold_dirs(run_dir)
    if not folds:
        from medseg.errors import MedsegError

        raise MedsegError(f"{run_dir}: no fold_*/metrics.csv found; run the pipeline first")
    rows_by_fold = {int(p.name.split("_")[1]): read_metrics_csv(p / "metrics.csv") for p in folds}
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
    datalist = run_dir / "datalist.json"
    if datalist.is_file():
        data = json.loads(datalist.read_text())
        summary["n_cases"] = len(data.get("cases", []))
        summary["bad_cases"] = data.get("bad_cases", [])
    timing = run_dir / "timing.json"
    if timing.is_file():
        summary["timing"] = json.loads(timing.read_text())
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


def _fmt(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _cells(stats: dict[str, Any]) -> list[str]:
    cells = [f"{_fmt(stats[m]['mean'])} ± {_fmt(stats[m]['std'])}" for m in METRIC_NAMES]
    hd95 = stats["hd95"]
    return [
        *cells,
        str(stats["counts"]["n"]),
        str(hd95["n_infinite"]),
        _fmt(hd95.get("capped_mean", math.nan)),
    ]


def metric_table(summary: dict[str, Any], label_key: str) -> list[list[str]]:
    header = ["fold", *METRIC_NAMES, "n", "HD95 inf", "HD95 capped"]
    table = [header]
    for k, per_label in sorted(summary["folds"].items(), key=lambda kv: int(kv[0])):
        table.append([k, *_cells(per_label[label_key])])
    fm = summary["fold_mean"][label_key]
    table.append(
        [
            "mean of folds",
            *[f"{_fmt(fm[m]['mean'])} ± {_fmt(fm[m]['std'])}" for m in METRIC_NAMES],
            "",
            "",
            "",
        ]
    )
    table.append(["all cases", *_cells(summary["overall"][label_key])])
    return table


def _markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def _html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png_b64(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def boxplot_figure(run_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = fold_dirs(run_dir)
    metrics = ["dice", "iou", "nsd", "hd95", "assd"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, m in zip(axes, metrics, strict=True):
        data = []
        for p in folds:
            vals = np.array([r.get(m, math.nan) for r in read_metrics_csv(p / "metrics.csv")], float)
            data.append(vals[np.isfinite(vals)])
        ax.boxplot(data, tick_labels=[p.name.split("_")[1] for p in folds])
        ax.set_title(m + (" (finite)" if m in DISTANCE_METRICS else ""))
        ax.set_xlabel("fold")
    return _png_b64(fig)


def curves_figure(run_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for p in sorted(run_dir.glob("fold_*")):
        hist = read_history(p / "history.csv")
        if not hist:
            continue
        ax1.plot([h["epoch"] for h in hist], [h["train_loss"] for h in hist], label=p.name)
        val = [h for h in hist if "val_dice" in h]
        ax2.plot([h["epoch"] for h in val], [h["val_dice"] for h in val], label=p.name)
    ax1.set_title("training loss")
    ax2.set_title("validation Dice (inner split)")
    for ax in (ax1, ax2):
        ax.set_xlabel("epoch")
        if ax.get_lines():
            ax.legend(fontsize=7)
    return _png_b64(fig)


def worst_overlays(run_dir: Path, n: int = 10) -> list[tuple[str, str]]:
    """(caption, base64 PNG) of the ``n`` worst overlays over all folds."""
    items = []
    for p in run_dir.glob("fold_*/overlays/*.png"):
        case, _, dice = p.stem.rpartition("_dice")
        try:
            items.append((float(dice), f"{p.parent.parent.name} {case} Dice {dice}", p))
        except ValueError:
            continue
    items.sort(key=lambda t: t[0])
    return [(cap, base64.b64encode(p.read_bytes()).decode()) for _, cap, p in items[:n]]


def write_report(run_dir: Path, title: str | None = None) -> dict[str, Any]:
    """Write summary.json, report.md and report.html into ``run_dir``; return the summary."""
    run_dir = Path(run_dir)
    summary = build_summary(run_dir)
    title = title or run_dir.name
    write_json(run_dir / "summary.json", summary)
    sections_md, sections_html = [], []
    for label_key in summary["overall"]:
        table = metric_table(summary, label_key)
        sections_md.append(f"## {label_key}\n\n{_markdown_table(table)}\n")
        sections_html.append(f"<h2>{label_key}</h2>{_html_table(table)}")
    defs_md = "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items())
    bad = summary.get("bad_cases", [])
    bad_md = "\n".join(f"- {b['id']}: {b['reason']}" for b in bad) or "none"
    direction = ", ".join(
        f"{m} {'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better" for m in METRIC_NAMES
    )
    md = (
        f"# Cross-validation report: {title}\n\nCases: {summary.get('n_cases', '?')}; "
        f"folds: {len(summary['folds'])}. Values: mean ± std over cases; {direction}.\n\n"
        + "\n".join(sections_md)
        + f"\n## Metric definitions\n\n{defs_md}\n\n## Skipped cases\n\n{bad_md}\n"
    )
    write_text(run_dir / "report.md", md)
    overlays = "".join(
        f'<figure><img src="data:image/png;base64,{b64}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for cap, b64 in worst_overlays(run_dir)
    )
    defs_html = "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
    bad_html = (
        "".join(f"<li>{html.escape(b['id'])}: {html.escape(b['reason'])}</li>" for b in bad)
        or "<li>none</li>"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}figure{{display:inline-block;margin:6px}}
figure img{{max-height:260px}}</style></head><body>
<h1>Cross-validation report: {html.escape(title)}</h1>
<p>Cases: {summary.get("n_cases", "?")}; folds: {len(summary["folds"])}. Values: mean ± std over cases;
{html.escape(direction)}. Worst cases: image, reference outline (green), prediction outline (red).</p>
{"".join(sections_html)}
<h2>Per-case distributions</h2><img src="data:image/png;base64,{boxplot_figure(run_dir)}">
<h2>Learning curves</h2><img src="data:image/png;base64,{curves_figure(run_dir)}">
<h2>The ten worst cases (lowest Dice over all folds)</h2>{overlays or "<p>none written</p>"}
<h2>Metric definitions</h2><ul>{defs_html}</ul>
<h2>Skipped cases</h2><ul>{bad_html}</ul>
</body></html>"""
    write_text(run_dir / "report.html", page)
    return summary
