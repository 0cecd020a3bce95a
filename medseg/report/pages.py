"""Cross-validation report of a run folder: ``summary.json``, ``report.md`` and ``report.html``.

Everything is read back from the files the stages wrote (:mod:`medseg.report.summary`, plus
``fold_k/overlays/`` and ``provenance.json``), so a report can be rebuilt from any finished run.
Plots and the worst cases' overlays are embedded; the case browser links to the overlay and
prediction files by paths relative to the run folder.

Numbers: mean ± std over cases (no std for one case); a distance whose every case is infinite
(one mask empty) reads ``inf (k cases)``, and finite means say how many cases were infinite.
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from medseg.errors import MedsegError
from medseg.evaluate.casewise import CLASS_MEAN, case_means
from medseg.evaluate.metrics import DEFINITIONS, DISTANCE_METRICS, HIGHER_IS_BETTER, METRIC_NAMES
from medseg.io.atomic import write_json, write_text
from medseg.report import figures
from medseg.report.cases import browser
from medseg.report.summary import build_summary, fold_rows
from medseg.run_dir import RunDir

LABELS = {
    "dice": "Dice",
    "iou": "IoU",
    "jaccard_thresholded": "thr. Jaccard",
    "hd95": "HD95",
    "hd": "HD",
    "assd": "ASSD",
    "nsd": "Surface Dice",
}


def _num(x: float | None) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def cell(stats: dict[str, Any], what: str = "case") -> str:
    """One summary as text: ``mean ± std`` (no std for one value), ``inf (k cases)`` when every
    value is infinite, the count of infinite values after a finite mean, ``-`` for no value."""
    n, n_inf = int(stats.get("n", 0)), int(stats.get("n_infinite", 0))
    if n_inf and n_inf == n:
        return f"inf ({n_inf} {what}{'s' if n_inf > 1 else ''})"
    if n == 0 or math.isnan(stats.get("mean", math.nan)):
        return "-"
    finite = n - n_inf
    text = _num(stats["mean"]) + (f" ± {_num(stats['std'])}" if finite > 1 else "")
    return text + (f"; inf in {n_inf}" if n_inf else "")


def header(unit: str) -> list[str]:
    return ["fold", *(LABELS[m] + (f" ({unit})" if m in DISTANCE_METRICS else "") for m in METRIC_NAMES), "n"]


def metric_table(summary: dict[str, Any], name: str) -> list[list[str]]:
    """Rows of one class's table (or the class mean's): each fold, the mean of folds, all cases."""
    table = [header(summary.get("distance_unit", "mm"))]
    for k, per_class in sorted(summary["folds"].items(), key=lambda kv: int(kv[0])):
        stats = per_class[name]
        table.append([k, *(cell(stats[m]) for m in METRIC_NAMES), str(stats["counts"]["n"])])
    fm = summary["fold_mean"][name]
    n_folds = len(summary["folds"])
    folds = f"{n_folds} fold{'s' if n_folds > 1 else ''}"
    table.append(["mean of folds", *(cell(fm[m], "fold") for m in METRIC_NAMES), folds])
    overall = summary["overall"][name]
    table.append(["all cases", *(cell(overall[m]) for m in METRIC_NAMES), str(overall["counts"]["n"])])
    return table


def table_names(summary: dict[str, Any]) -> list[str]:
    """The classes with a table; the class mean too when there are several classes."""
    names = list(summary.get("classes") or [n for n in summary["overall"] if n != CLASS_MEAN])
    return names + ([CLASS_MEAN] if len(names) > 1 and CLASS_MEAN in summary["overall"] else [])


def _title(name: str) -> str:
    return "mean over classes" if name == CLASS_MEAN else name


def _markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]])


def _html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


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
    summary["provenance"] = read_provenance(run, summary.get("timing", {}))
    title = title or run.root.name
    write_json(run.summary, summary)
    write_text(run.report_md, markdown_page(summary, title))
    write_text(run.report_html, html_page(summary, title, run.root))
    return summary


def read_provenance(run: RunDir, timing: dict[str, Any]) -> dict[str, Any]:
    """``provenance.json`` of the run, the report's date and the wall time (from ``timing.json``)
    added."""
    path = run.provenance
    out = json.loads(path.read_text()) if path.is_file() else {}
    out["report_written"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    if "total_seconds" in timing:
        out["wall_seconds"] = timing["total_seconds"]
    return out


def _direction() -> str:
    return ", ".join(
        f"{LABELS[m]} {'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better" for m in METRIC_NAMES
    )


def _intro(summary: dict[str, Any]) -> str:
    unit = summary.get("distance_unit", "mm")
    return (
        f"Cases: {summary.get('n_cases', '?')}; folds: {len(summary['folds'])}. Values: mean ± std over "
        f"cases (no std for one case); distances in {unit}, over the cases where both masks are "
        f"non-empty, with the count of infinite ones; {_direction()}."
    )


def uncertainty_text(summary: dict[str, Any]) -> str:
    """How well the held-out uncertainty score finds the worst cases, in one paragraph, or ""."""
    u = summary.get("uncertainty")
    if not u:
        return ""
    auroc = "undefined" if u["auroc"] is None else f"{u['auroc']:.3f}"
    rho = "undefined" if u["spearman"] is None else f"{u['spearman']:.3f}"
    why = f" ({u['reason']})" if u.get("reason") else ""
    return (
        f"Each held-out case was scored by the disagreement of its test-time flips. Over {u['n']} cases, "
        f"{u['n_low']} with a class-mean Dice below {u['threshold']}: AUROC {auroc} for finding them by "
        f"the score, Spearman correlation of score and Dice {rho}{why}. 0.5 is chance, 1 a perfect ranking; "
        "`medseg predict` flags inputs for review by the same kind of score."
    )


def markdown_page(summary: dict[str, Any], title: str) -> str:
    """``report.md``: a table per class, the uncertainty ranking, definitions and skipped cases."""
    sections = [
        f"## {_title(n)}\n\n{_markdown_table(metric_table(summary, n))}\n" for n in table_names(summary)
    ]
    defs = "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items())
    bad = "\n".join(f"- {b['id']}: {b['reason']}" for b in summary.get("bad_cases", [])) or "none"
    unc = uncertainty_text(summary)
    prov = "\n".join(f"- {k}: {v}" for k, v in provenance_items(summary))
    return (
        f"# Cross-validation report: {title}\n\n{_intro(summary)}\n\n"
        + "\n".join(sections)
        + (f"\n## Which cases to review\n\n{unc}\n" if unc else "")
        + postprocessing_text(summary)
        + f"\n## Metric definitions\n\n{defs}\n\n## Skipped cases\n\n{bad}\n\n## Provenance\n\n{prov}\n"
    )


def provenance_items(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) of what made the run and the report."""
    p = summary.get("provenance", {})
    ml = summary.get("mlflow", {})
    items = [
        ("medseg version", p.get("medseg_version", "?")),
        ("git commit", p.get("git_commit") or "not a git checkout"),
        ("run started", p.get("started", "?")),
        ("report written", p.get("report_written", "?")),
        ("machine", p.get("machine", "?")),
        ("device", p.get("device", "?")),
        ("command", p.get("command", "?")),
        ("config.yaml digest (sha256)", p.get("config_digest", "?")),
        ("wall time", f"{p['wall_seconds'] / 60:.1f} min" if "wall_seconds" in p else "?"),
        ("MLflow pipeline run", ml.get("parent_run_id") or "none (tracking off)"),
    ]
    items += [(f"MLflow run of fold {k}", v) for k, v in sorted(ml.get("fold_run_ids", {}).items())]
    return items


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
    pp = summary.get("postprocessing")
    if not pp:
        return ""
    items = "".join(
        f"<li>{html.escape(v)}: "
        + html.escape(", ".join(f"class {k} {d:.4f}" for k, d in pp["mean_dice"][v].items()))
        + "</li>"
        for v in pp["mean_dice"]
    )
    head = "<h2>Post-processing (chosen from cross-validation)</h2>"
    return f"{head}<p>{html.escape(pp['reason'])}.</p><ul>{items}</ul>"


def _figure(fig: figures.Figure, alt: str) -> str:
    if fig.png is None:
        return f'<p class="reason">Not drawn: {html.escape(fig.reason or "no data")}.</p>'
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{fig.png}">'


def worst_overlays(run_dir: Path, summary_rows: dict[int, list[Any]], n: int = 10) -> list[tuple[str, str]]:
    """(caption, relative path) of the overlays of the ``n`` cases with the lowest class-mean Dice."""
    run = RunDir(run_dir)
    ranked = sorted(
        ((r["dice"], fold, r["case"]) for fold, rows in summary_rows.items() for r in case_means(rows)),
        key=lambda t: (t[0], t[1], t[2]),
    )
    out = []
    for dice, fold, case in ranked:
        path = run.fold(fold).overlay(case)
        if path.is_file():
            where = quote(path.relative_to(run.root).as_posix())  # case ids may hold # ? %
            out.append((f"fold {fold}, {case}: Dice {_num(dice)}", where))
        if len(out) == n:
            break
    return out


STYLE = """body{font-family:sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;cursor:pointer;position:sticky;top:0}.scroll{overflow-x:auto;max-width:100%}
#cases-box{max-height:640px;overflow:auto}img.plot{max-width:100%;height:auto;display:block}
img.thumb{height:48px;width:auto}figure{display:inline-block;margin:6px;max-width:100%}
figure img{max-width:100%;height:auto;max-height:320px}.reason{color:#855;font-style:italic}
.filters{margin:.5em 0}dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
dt{font-weight:bold}dd{margin:0;overflow-wrap:anywhere}"""


def html_page(summary: dict[str, Any], title: str, run_dir: Path) -> str:
    """``report.html``: tables, plots, the case browser, the worst cases and the provenance.

    Args:
        summary: the contents of ``summary.json``.
        title: the page title.
        run_dir: the run folder whose histories, metrics and overlays are drawn.

    Returns:
        The HTML text.
    """
    run = RunDir(run_dir)
    rows_by_fold = fold_rows(run.root)
    all_rows = [r for rows in rows_by_fold.values() for r in rows]
    unit = summary.get("distance_unit", "mm")
    dims = 3 if any(any(f.predictions.glob("*.nii.gz")) for f in run.scored_folds()) else 2
    tables = "".join(
        f"<h3>{html.escape(_title(n))}</h3>{_html_table(metric_table(summary, n))}"
        for n in table_names(summary)
    )
    worst = worst_overlays(run.root, rows_by_fold)
    shown = "".join(
        f'<figure><a href="{html.escape(p)}"><img alt="overlay" src="{html.escape(p)}"></a>'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for cap, p in worst
    )
    worst_head = "The worst cases"
    if worst:
        worst_head = (
            f"The {len(worst)} worst case{'s' if len(worst) != 1 else ''} (lowest Dice over all folds)"
        )
    unc = uncertainty_text(summary) or "No uncertainty scores (evaluate.uncertainty: false)."
    no_overlays = '<p class="reason">No overlays were written (evaluate.overlays: none).</p>'
    u_fig = figures.uncertainty_plot(case_means(all_rows), summary.get("uncertainty") or {"threshold": 0.9})
    defs = "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
    bad = "".join(
        f"<li>{html.escape(b['id'])}: {html.escape(b['reason'])}</li>" for b in summary.get("bad_cases", [])
    )
    prov = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in provenance_items(summary)
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>Cross-validation report: {html.escape(title)}</h1>
<p>{html.escape(_intro(summary))}</p>
<h2>Metrics per class</h2>{tables}
<h2>Per-case distributions</h2>{_figure(figures.boxplots(rows_by_fold, unit), "boxplots per class and fold")}
<h2>Volumes</h2>{_figure(figures.volume_plots(all_rows, unit, dims), "Dice against volume, Bland-Altman")}
<h2>Learning curves</h2>{_figure(figures.learning_curves(run.folds()), "learning curves")}
<h2>Which cases to review</h2><p>{html.escape(unc)}</p>
{_figure(u_fig, "uncertainty against Dice") if summary.get("uncertainty") else ""}
<h2>Every case</h2>{browser(run.root, rows_by_fold, unit, dims)}
<h2>{html.escape(worst_head)}</h2>
<p>Reference and prediction outlines, one colour per class.</p>{shown or no_overlays}
{_postprocessing_html(summary)}<h2>Metric definitions</h2><ul>{defs}</ul>
<h2>Skipped cases</h2><ul>{bad or "<li>none</li>"}</ul>
<h2>Provenance</h2><dl>{prov}</dl>
</body></html>"""
