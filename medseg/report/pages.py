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
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from medseg.config.models import EvaluateConfig
from medseg.errors import DataError, MedsegError
from medseg.evaluate.casewise import CLASS_MEAN, case_means
from medseg.evaluate.metrics import DEFINITIONS, DISTANCE_METRICS, HIGHER_IS_BETTER, METRIC_NAMES
from medseg.io.atomic import write_json, write_text
from medseg.report import figures
from medseg.report.cases import browser
from medseg.report.reading import number, read_json, read_text
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


RAW = "raw (before post-processing)"


def _num(x: Any) -> str:
    """A number with four decimals; ``nan`` for None or NaN, ``?`` for what is not a number."""
    value = number(x)
    if value is not None:
        return f"{value:.4f}"
    return "nan" if x is None or isinstance(x, float) else "?"


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
    raw = summary.get("raw")
    if raw and name in raw["overall"]:
        fm, overall = raw["fold_mean"][name], raw["overall"][name]
        table.append([f"mean of folds, {RAW}", *(cell(fm[m], "fold") for m in METRIC_NAMES), folds])
        n = str(overall["counts"]["n"])
        table.append([f"all cases, {RAW}", *(cell(overall[m]) for m in METRIC_NAMES), n])
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


def write_report(run_dir: Path, title: str | None = None, n_worst: int | None = None) -> dict[str, Any]:
    """Write ``summary.json``, ``report.md`` and ``report.html`` into ``run_dir``.

    Args:
        run_dir: a run folder with at least one scored fold.
        title: the page title; default the folder's name.
        n_worst: how many worst cases the page shows; default ``evaluate.n_worst`` of the folder's
            ``config.yaml``.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        MedsegError: the folder does not exist or has no scored fold; DataError: a file the report
            reads is damaged (named, with what is wrong).
    """
    if not Path(run_dir).is_dir():
        raise MedsegError(f"{run_dir}: folder not found; give a run folder written by `medseg run`")
    run = RunDir(run_dir)
    summary = build_summary(run.root)
    summary["provenance"] = read_provenance(run, summary.get("timing", {}))
    summary["n_worst"] = worst_count(run) if n_worst is None else n_worst
    title = title or run.root.name
    page, md = html_page(summary, title, run.root), markdown_page(summary, title)  # all read first
    write_json(run.summary, summary)
    write_text(run.report_md, md)
    write_text(run.report_html, page)
    return summary


def worst_count(run: RunDir) -> int:
    """``evaluate.n_worst`` of the folder's ``config.yaml``; the default when the file or key is absent.

    Raises:
        DataError: ``config.yaml`` is not YAML, or its ``evaluate.n_worst`` is not a whole number >= 0.
    """
    default = int(EvaluateConfig().n_worst)
    if not run.config.is_file():
        return default
    import yaml

    from medseg.config import strict_yaml

    remedy = "fix it, or run `medseg run` on the pipeline again to rewrite it"
    try:
        raw = strict_yaml.load(read_text(run.config, remedy))
    except (yaml.YAMLError, strict_yaml.YamlLimitError) as err:
        raise DataError(f"{run.config}: not valid YAML ({str(err).splitlines()[0]}); {remedy}") from None
    section = raw.get("evaluate") if isinstance(raw, dict) else None
    value = section.get("n_worst", default) if isinstance(section, dict) else default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DataError(f"{run.config}: evaluate.n_worst {value!r} is not a whole number >= 0; {remedy}")
    return value


def read_provenance(run: RunDir, timing: dict[str, Any]) -> dict[str, Any]:
    """``provenance.json`` of the run, the report's date and the wall time (from ``timing.json``)
    added.

    Raises:
        DataError: ``provenance.json`` is damaged (not JSON, not an object).
    """
    path = run.provenance
    remedy = "delete it (the report then shows no provenance) or run the study again, which rewrites it"
    out = read_json(path, remedy) if path.is_file() else {}
    out["report_written"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    seconds = number(timing.get("total_seconds"))
    if seconds is not None:
        out["wall_seconds"] = seconds
    return out


def _direction() -> str:
    return ", ".join(
        f"{LABELS[m]} {'higher' if HIGHER_IS_BETTER[m] else 'lower'} is better" for m in METRIC_NAMES
    )


def _intro(summary: dict[str, Any]) -> str:
    unit = summary.get("distance_unit", "mm")
    adopted = ""
    if summary.get("raw"):
        adopted = (
            " Results are those of the post-processed predictions (the post-processing adopted from "
            "cross-validation, below), as `medseg predict` delivers them; rows marked "
            f"{RAW} are as predicted."
        )
    return (
        f"Cases: {summary.get('n_cases', '?')}; folds: {len(summary['folds'])}. Values: mean ± std over "
        f"cases (no std for one case); distances in {unit}, over the cases where both masks are "
        f"non-empty, with the count of infinite ones; {_direction()}.{adopted}"
    )


def uncertainty_text(summary: dict[str, Any]) -> str:
    """How well the held-out uncertainty score finds the worst cases, in one paragraph, or ""."""
    u = summary.get("uncertainty")
    if not isinstance(u, dict):
        return ""
    low, high = u.get("n_low", "?"), u.get("n_high", "?")
    counts = (
        f"Over {u.get('n', '?')} cases, {low} have a class-mean Dice below {u.get('threshold', '?')} "
        f"and {high} do not"
    )
    if u.get("auroc") is not None:
        se = f" ± {u['auroc_se']:.3f} (standard error)" if number(u.get("auroc_se")) is not None else ""
        found = f"AUROC {_num3(u['auroc'])}{se} for finding them by the score"
    else:
        found = f"no AUROC ({u.get('reason', 'too few cases')})"
    rho = "undefined" if u.get("spearman") is None else _num3(u["spearman"])
    return (
        f"Each held-out case was scored by the disagreement of its model's test-time flips. {counts}: "
        f"{found}; Spearman correlation of score and Dice {rho}. For the AUROC, 0.5 is chance and 1 a "
        "perfect ranking; `medseg predict` gives each input the same score, from its first fold model."
    )


def _num3(x: Any) -> str:
    value = number(x)
    return "?" if value is None else f"{value:.3f}"


def _share(part: Any, whole: Any, rate: Any) -> str:
    value = number(rate)
    return f"{part} of {whole} ({'?' if value is None else f'{value:.0%}'})"


def review_text(summary: dict[str, Any]) -> str:
    """The review threshold ``predict`` uses and what it caught and flagged in cross-validation, or ""."""
    r = summary.get("review")
    if not isinstance(r, dict):
        return ""
    below = f"class-mean Dice below {r.get('dice_below', '?')}"
    if r.get("threshold") is None:
        return (
            f"No review threshold: {r.get('reason', 'none chosen')}. `medseg predict` flags no input "
            "unless given one (--set predict.review_threshold=...)."
        )
    if r.get("source") == "study":
        origin = (
            f"chosen from the held-out cases to catch at least {_percent(r.get('catch'))} of "
            f"those with a {below}"
        )
    else:
        origin = f"set by predict.review_threshold (the held-out cases gave {r.get('study_threshold')})"
    rates = ""
    if "caught" in r:
        rates = (
            f" In cross-validation it catches {_share(r['caught'], r.get('n_low'), r.get('catch_rate'))} "
            f"cases with a {below} and flags {_share(r['flagged'], r.get('n'), r.get('flag_rate'))} cases."
        )
    return (
        f"`medseg predict` flags an input for review when its uncertainty is above {r['threshold']}, "
        f"{origin}.{rates}"
    )


def _percent(x: Any) -> str:
    value = number(x)
    return "?" if value is None else f"{value:.0%}"


def markdown_page(summary: dict[str, Any], title: str) -> str:
    """``report.md``: a table per class, the uncertainty ranking, definitions and skipped cases."""
    sections = [
        f"## {_title(n)}\n\n{_markdown_table(metric_table(summary, n))}\n" for n in table_names(summary)
    ]
    defs = "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items())
    bad = (
        "\n".join(f"- {b.get('id', '?')}: {b.get('reason', '?')}" for b in summary.get("bad_cases", []))
        or "none"
    )
    unc = "\n\n".join(t for t in (uncertainty_text(summary), review_text(summary)) if t)
    prov = "\n".join(f"- {k}: {v}" for k, v in provenance_items(summary))
    return (
        f"# Cross-validation report: {title}\n\n{_intro(summary)}\n\n"
        + "\n".join(sections)
        + (f"\n## Which cases to review\n\n{unc}\n" if unc else "")
        + postprocessing_text(summary)
        + f"\n## Metric definitions\n\n{defs}\n\n## Skipped cases\n\n{bad}\n\n## Provenance\n\n{prov}\n"
    )


def _minutes(seconds: Any) -> str:
    value = number(seconds)
    return "?" if value is None or not math.isfinite(value) else f"{value / 60:.1f} min"


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
        ("wall time", _minutes(p.get("wall_seconds"))),
        ("MLflow pipeline run", ml.get("parent_run_id") or "none (tracking off)"),
    ]
    items += [(f"MLflow run of fold {k}", v) for k, v in sorted(ml.get("fold_run_ids", {}).items())]
    return items


def postprocessing_parts(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(paragraphs, one line per variant with its mean Dice per class) of the post-processing
    chosen from cross-validation; both empty when none was chosen."""
    pp = summary.get("postprocessing")
    if not isinstance(pp, dict):
        return [], []
    means = pp.get("mean_dice")
    means = means if isinstance(means, dict) else {}
    lines = [
        f"{v}: " + ", ".join(f"class {k} {_num(d)}" for k, d in per_class.items())
        for v, per_class in means.items()
        if isinstance(per_class, dict)
    ]
    paragraphs = [f"{pp.get('reason', '?')}."]
    if summary.get("raw"):
        paragraphs.append(
            "Adopted: the tables, the case browser, the worst cases, the review threshold, "
            "summary.json and the MLflow cv/* metrics give the post-processed results, what "
            f"`medseg predict` delivers; the rows marked {RAW} (and cv_raw/* in MLflow, "
            "fold_k/metrics_raw.csv, fold_k/predictions_raw/) give them as predicted."
        )
    elif pp.get("value"):
        paragraphs.append(
            "The results shown are as predicted: the folds were scored before medseg kept each "
            "variant's metrics; `medseg predict` applies the post-processing."
        )
    return paragraphs, lines


def postprocessing_text(summary: dict[str, Any]) -> str:
    """The post-processing section of ``report.md``, or ""."""
    paragraphs, lines = postprocessing_parts(summary)
    if not paragraphs:
        return ""
    body = "\n\n".join(paragraphs) + "\n\n" + "\n".join(f"- {line}" for line in lines)
    return f"\n## Post-processing (chosen from cross-validation)\n\n{body}\n"


def _postprocessing_html(summary: dict[str, Any]) -> str:
    paragraphs, lines = postprocessing_parts(summary)
    if not paragraphs:
        return ""
    text = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<h2>Post-processing (chosen from cross-validation)</h2>{text}<ul>{items}</ul>"


def _figure(fig: figures.Figure, alt: str) -> str:
    if fig.png is None:
        return f'<p class="reason">Not drawn: {html.escape(fig.reason or "no data")}.</p>'
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{fig.png}">'


def worst_overlays(run_dir: Path, summary_rows: dict[int, list[Any]], n: int) -> list[tuple[str, str]]:
    """(caption, relative path) of the overlays of the ``n`` cases with the lowest class-mean Dice."""
    run = RunDir(run_dir)
    if n <= 0:
        return []
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


def _worst_html(summary: dict[str, Any], run: RunDir, rows_by_fold: dict[int, list[Any]]) -> str:
    """The worst cases' section: ``summary["n_worst"]`` overlays (as many as there are)."""
    n = int(summary.get("n_worst", 10))
    worst = worst_overlays(run.root, rows_by_fold, n)
    shown = "".join(
        f'<figure><a href="{html.escape(p)}"><img alt="overlay" src="{html.escape(p)}"></a>'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for cap, p in worst
    )
    if n == 0:
        return "<h2>The worst cases</h2><p>None shown (evaluate.n_worst: 0).</p>"
    if not worst:
        why = "No overlays were written (evaluate.overlays: none)."
        return f'<h2>The worst cases</h2><p class="reason">{why}</p>'
    head = f"The {len(worst)} worst case{'s' if len(worst) != 1 else ''} (lowest Dice over all folds)"
    note = "Reference and prediction outlines, one colour per class"
    note += "; predictions after the adopted post-processing." if summary.get("raw") else "."
    return f"<h2>{html.escape(head)}</h2><p>{note}</p>{shown}"


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
    worst = _worst_html(summary, run, rows_by_fold)
    unc = uncertainty_text(summary) or "No uncertainty scores (evaluate.uncertainty: false)."
    review = f"<p>{html.escape(review_text(summary))}</p>" if review_text(summary) else ""
    u_fig = figures.uncertainty_plot(case_means(all_rows), summary.get("uncertainty") or {"threshold": 0.9})
    defs = "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in DEFINITIONS.items())
    bad = "".join(
        f"<li>{html.escape(str(b.get('id', '?')))}: {html.escape(str(b.get('reason', '?')))}</li>"
        for b in summary.get("bad_cases", [])
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
<h2>Which cases to review</h2><p>{html.escape(unc)}</p>{review}
{_figure(u_fig, "uncertainty against Dice") if summary.get("uncertainty") else ""}
<h2>Every case</h2>{browser(run.root, rows_by_fold, unit, dims)}
{worst}
{_postprocessing_html(summary)}<h2>Metric definitions</h2><ul>{defs}</ul>
<h2>Skipped cases</h2><ul>{bad or "<li>none</li>"}</ul>
<h2>Provenance</h2><dl>{prov}</dl>
</body></html>"""
