"""Cross-validation report of a run folder: ``summary.json``, ``report.md`` and ``report.html``.

Everything is read back from the files the stages wrote (:mod:`medseg.report.summary`, plus
``fold_k/overlays/``), so a report can be rebuilt from any finished run. The HTML page is
self-contained: plots and overlays are embedded.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import MedsegError
from medseg.evaluate.casewise import read_metrics_csv
from medseg.evaluate.metrics import DEFINITIONS, DISTANCE_METRICS, HIGHER_IS_BETTER, METRIC_NAMES
from medseg.io.atomic import write_json, write_text
from medseg.report.summary import build_summary, read_history
from medseg.run_dir import RunDir


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
    """Rows of one class's table: each fold, the mean of folds, all cases."""
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
    """Per-case distributions of the main metrics per fold, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = RunDir(run_dir).scored_folds()
    metrics = ["dice", "iou", "nsd", "hd95", "assd"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, m in zip(axes, metrics, strict=True):
        data = []
        for p in folds:
            vals = np.array([r.get(m, math.nan) for r in read_metrics_csv(p.metrics)], float)
            data.append(vals[np.isfinite(vals)])
        ax.boxplot(data, tick_labels=[str(p.index) for p in folds])
        ax.set_title(m + (" (finite)" if m in DISTANCE_METRICS else ""))
        ax.set_xlabel("fold")
    return _png_b64(fig)


def curves_figure(run_dir: Path) -> str:
    """Training loss and validation Dice per epoch and fold, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for p in RunDir(run_dir).folds():
        hist = read_history(p.history)
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
    for p in (png for fold in RunDir(run_dir).folds() for png in fold.overlays.glob("*.png")):
        case, _, dice = p.stem.rpartition("_dice")
        try:
            items.append((float(dice), f"{p.parent.parent.name} {case} Dice {dice}", p))
        except ValueError:
            continue
    items.sort(key=lambda t: t[0])
    return [(cap, base64.b64encode(p.read_bytes()).decode()) for _, cap, p in items[:n]]


def write_report(run_dir: Path, title: str | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and ``report.html`` into ``run_dir``.

    Args:
        run_dir: a run folder with at least one scored fold.
        title: the page title; default the folder's name.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        MedsegError: the folder does not exist or has no scored fold.
    """
    if not Path(run_dir).is_dir():
        raise MedsegError(f"{run_dir}: folder not found; give a run folder written by `medseg run`")
    run = RunDir(run_dir)
    summary = build_summary(run.root)
    title = title or run.root.name
    write_json(run.summary, summary)
    write_text(run.report_md, markdown_page(summary, title))
    write_text(run.report_html, html_page(summary, title, run.root))
    return summary


def _direction() -> str:
    return ", ".join(f"{m} {'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better" for m in METRIC_NAMES)


def markdown_page(summary: dict[str, Any], title: str) -> str:
    """``report.md``: a table per class, the metric definitions and the skipped cases.

    Args:
        summary: the contents of ``summary.json``.
        title: the page title.

    Returns:
        The Markdown text.
    """
    sections = [f"## {key}\n\n{_markdown_table(metric_table(summary, key))}\n" for key in summary["overall"]]
    defs = "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items())
    bad = "\n".join(f"- {b['id']}: {b['reason']}" for b in summary.get("bad_cases", [])) or "none"
    return (
        f"# Cross-validation report: {title}\n\nCases: {summary.get('n_cases', '?')}; "
        f"folds: {len(summary['folds'])}. Values: mean ± std over cases; {_direction()}.\n\n"
        + "\n".join(sections)
        + postprocessing_text(summary)
        + f"\n## Metric definitions\n\n{defs}\n\n## Skipped cases\n\n{bad}\n"
    )


def postprocessing_text(summary: dict[str, Any]) -> str:
    """The post-processing chosen from cross-validation and the mean Dice behind it, or ""."""
    pp = summary.get("postprocessing")
    if not pp:
        return ""
    lines = [
        f"- {v}: " + ", ".join(f"class {k} {d:.4f}" for k, d in pp["mean_dice"][v].items())
        for v in pp["mean_dice"]
    ]
    return (
        f"\n## Post-processing (chosen from cross-validation)\n\n{pp['reason']}.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _postprocessing_html(summary: dict[str, Any]) -> str:
    text = postprocessing_text(summary).strip()
    if not text:
        return ""
    head, *rest = text.split("\n\n")
    items = "".join(f"<li>{html.escape(line[2:])}</li>" for line in "\n\n".join(rest[1:]).splitlines())
    head = "<h2>Post-processing (chosen from cross-validation)</h2>"
    return f"{head}<p>{html.escape(rest[0])}</p><ul>{items}</ul>"


def html_page(summary: dict[str, Any], title: str, run_dir: Path) -> str:
    """``report.html``, self-contained: tables, plots and the worst cases' overlays embedded.

    Args:
        summary: the contents of ``summary.json``.
        title: the page title.
        run_dir: the run folder whose histories and overlays are drawn.

    Returns:
        The HTML text.
    """
    sections = "".join(
        f"<h2>{key}</h2>{_html_table(metric_table(summary, key))}" for key in summary["overall"]
    )
    overlays = "".join(
        f'<figure><img src="data:image/png;base64,{b64}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for cap, b64 in worst_overlays(run_dir)
    )
    defs = "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
    bad = "".join(
        f"<li>{html.escape(b['id'])}: {html.escape(b['reason'])}</li>" for b in summary.get("bad_cases", [])
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}figure{{display:inline-block;margin:6px}}
figure img{{max-height:260px}}</style></head><body>
<h1>Cross-validation report: {html.escape(title)}</h1>
<p>Cases: {summary.get("n_cases", "?")}; folds: {len(summary["folds"])}. Values: mean ± std over cases;
{html.escape(_direction())}. Worst cases: image, reference outline (green), prediction outline (red).</p>
{sections}
<h2>Per-case distributions</h2><img src="data:image/png;base64,{boxplot_figure(run_dir)}">
<h2>Learning curves</h2><img src="data:image/png;base64,{curves_figure(run_dir)}">
<h2>The ten worst cases (lowest Dice over all folds)</h2>{overlays or "<p>none written</p>"}
{_postprocessing_html(summary)}<h2>Metric definitions</h2><ul>{defs}</ul>
<h2>Skipped cases</h2><ul>{bad or "<li>none</li>"}</ul>
</body></html>"""
