"""The report's case browser: every held-out case and class in one table, sortable by any column and
filtered by fold, class and a metric threshold, with a thumbnail opening the case's overlay and
links to its prediction file and its fold's MLflow run.

Links are relative to the run folder, so the report works wherever the folder is moved. MLflow
links open in the UI that ``medseg ui RUN_DIR`` starts (at :data:`UI_URL` by default); the page
gives that command with the run folder's path as it was given (:func:`ui_command`).
"""

from __future__ import annotations

import html
import math
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote

from medseg.evaluate.casewise import CLASS_MEAN, Row, case_means, class_name
from medseg.report.figures import volume_unit
from medseg.report.summary import run_state
from medseg.run_dir import RunDir

UI_URL = "http://127.0.0.1:5000"
COLUMNS = ("dice", "iou", "nsd", "hd95", "assd")

SCRIPT = """
(function () {
  var table = document.getElementById('cases');
  if (!table) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  function value(row, i) {
    var cell = row.cells[i];
    var v = cell.getAttribute('data-v');
    return v === null ? cell.textContent : parseFloat(v);
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.addEventListener('click', function () {
      var up = th.getAttribute('data-dir') !== 'up';
      th.setAttribute('data-dir', up ? 'up' : 'down');
      rows.sort(function (a, b) {
        var x = value(a, i), y = value(b, i);
        if (x === y) return 0;
        return (x < y ? -1 : 1) * (up ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  function apply() {
    var fold = document.getElementById('f-fold').value;
    var cls = document.getElementById('f-class').value;
    var metric = document.getElementById('f-metric').value;
    var limit = parseFloat(document.getElementById('f-below').value);
    var shown = 0;
    rows.forEach(function (r) {
      var ok = (!fold || r.getAttribute('data-fold') === fold) &&
        (!cls || r.getAttribute('data-class') === cls);
      if (ok && !isNaN(limit)) {
        var v = parseFloat(r.getAttribute('data-' + metric));
        ok = v < limit;
      }
      r.style.display = ok ? '' : 'none';
      if (ok) shown += 1;
    });
    document.getElementById('f-count').textContent = shown + ' of ' + rows.length + ' rows';
  }
  ['f-fold', 'f-class', 'f-metric', 'f-below'].forEach(function (id) {
    document.getElementById(id).addEventListener('input', apply);
  });
  apply();
})();
"""


def _num(value: Any, digits: int = 4) -> tuple[str, str]:
    """(text shown, value sorted on) of a number; inf sorts last, NaN first."""
    v = float(value) if value not in (None, "") else math.nan
    if math.isnan(v):
        return "", "-1e308"
    if math.isinf(v):
        return "inf", "1e308"
    return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}", repr(v)


def ui_command(run_dir: Path) -> str:
    """The ``medseg ui`` command that opens the run folder from the current folder: its path as
    given, relative to the current folder when it lies inside it, quoted for a POSIX shell.

    Example:
        >>> ui_command(Path("runs/demo")), ui_command(Path("/data/my runs/demo"))
        ('medseg ui runs/demo', "medseg ui '/data/my runs/demo'")
    """
    path = Path(run_dir)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    return f"medseg ui {shlex.quote(path.as_posix())}"


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def case_rows(rows_by_fold: dict[int, list[Row]]) -> list[tuple[int, Row]]:
    """(fold, row) for every case and class, and each case's class mean when there are classes."""
    out = []
    for fold, rows in rows_by_fold.items():
        multi = len({r["label"] for r in rows}) > 1
        out += [(fold, r) for r in rows] + ([(fold, r) for r in case_means(rows)] if multi else [])
    return out


def _row(run: RunDir, fold: int, r: Row, factor: float, spatial_dims: int, mlflow_run: str) -> str:
    """One case and class as a table row, its sort values and filter keys as data attributes."""
    fd = run.fold(fold)
    name = class_name(r) if r.get("label") else CLASS_MEAN
    cells = [
        f'<td data-v="{fold}">{fold}</td>',
        f"<td>{html.escape(r['case'])}</td>",
        f"<td>{html.escape(name)}</td>",
    ]
    attrs = {}
    for m in COLUMNS:
        text, v = _num(r.get(m))
        attrs[m] = v
        cells.append(f'<td data-v="{v}">{text}</td>')
    for key in ("ref_volume", "pred_volume"):
        text, v = _num(float(r[key]) * factor if key in r else None, 4)
        if text not in ("", "inf") and abs(float(v)) >= 1000:
            text = f"{float(v):,.0f}"
        cells.append(f'<td data-v="{v}">{text}</td>')
    text, v = _num(r.get("uncertainty"))
    attrs["uncertainty"] = v
    cells.append(f'<td data-v="{v}">{text}</td>')
    overlay = fd.overlay(r["case"])
    src = html.escape(quote(overlay.relative_to(run.root).as_posix()))  # ids may hold # ? %
    thumb = f'<a href="{src}"><img class="thumb" loading="lazy" alt="overlay" src="{src}"></a>'
    cells.append(f"<td>{thumb if overlay.is_file() else ''}</td>")
    pred = fd.prediction(r["case"], spatial_dims)
    kind = "".join(pred.suffixes).lstrip(".")
    link = _link(quote(pred.relative_to(run.root).as_posix()), kind) if pred.is_file() else ""
    cells.append(f"<td>{link}</td>")
    cells.append(f"<td>{mlflow_run}</td>")
    data = " ".join(f'data-{k}="{v}"' for k, v in attrs.items())
    return f'<tr data-fold="{fold}" data-class="{html.escape(name)}" {data}>{"".join(cells)}</tr>'


def browser(run_dir: Path, rows_by_fold: dict[int, list[Row]], unit: str, spatial_dims: int) -> str:
    """The case browser's HTML (filters, table, script)."""
    run = RunDir(run_dir)
    state = run_state(run)
    exp = state.get("experiment_id")
    links = {}
    for fold in rows_by_fold:
        entry = state["folds"].get(str(fold))
        run_id = str(entry.get("run_id") or "") if isinstance(entry, dict) else ""
        links[fold] = (
            _link(f"{UI_URL}/#/experiments/{exp}/runs/{run_id}", run_id[:8]) if run_id and exp else ""
        )
    vunit, factor = volume_unit(unit, spatial_dims)
    body = [_row(run, fold, r, factor, spatial_dims, links[fold]) for fold, r in case_rows(rows_by_fold)]
    head = [
        "fold",
        "case",
        "class",
        "Dice",
        "IoU",
        "Surface Dice",
        f"HD95 ({unit})",
        f"ASSD ({unit})",
        f"reference ({vunit})",
        f"predicted ({vunit})",
        "uncertainty",
        "overlay",
        "prediction",
        "MLflow run",
    ]
    folds = "".join(f'<option value="{k}">{k}</option>' for k in rows_by_fold)
    names = sorted(
        {html.escape(class_name(r) if r.get("label") else CLASS_MEAN) for _, r in case_rows(rows_by_fold)}
    )
    classes = "".join(f'<option value="{n}">{n}</option>' for n in names)
    metrics = "".join(f'<option value="{m}">{m}</option>' for m in (*COLUMNS, "uncertainty"))
    filters = (
        f'<div class="filters">fold <select id="f-fold"><option value="">all</option>{folds}</select> '
        f'class <select id="f-class"><option value="">all</option>{classes}</select> '
        f'rows whose <select id="f-metric">{metrics}</select> is below '
        f'<input id="f-below" type="number" step="any" size="6" placeholder="any"> '
        f'<span id="f-count"></span></div>'
    )
    note = (
        "<p>Click a heading to sort. MLflow links open in the UI that "
        f"<code>{html.escape(ui_command(run.root))}</code> starts ({UI_URL}), typed in the folder "
        f"the report was written from. Distances in {unit}; volumes in {vunit}.</p>"
    )
    table = (
        '<div class="scroll" id="cases-box"><table id="cases"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )
    return note + filters + table + f"<script>{SCRIPT}</script>"
