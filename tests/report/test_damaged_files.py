"""`medseg report` on a run folder whose files were damaged: one clear line naming the file and what
is wrong (exit code 1), never an unexpected error (exit code 3), and no half-written report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.evaluate.casewise import write_metrics_csv

runner = CliRunner()


def _row(case: str, dice: float) -> dict:
    return {"case": case, "label": 1, "class": "lesion", "dice": dice, "iou": dice, "hd95": 1.0, "nsd": dice}


def _folder(tmp_path: Path) -> Path:
    """A scored run folder of two folds, its provenance and timing beside."""
    run = tmp_path / "run"
    write_metrics_csv(run / "fold_0" / "metrics.csv", [_row("a", 0.8), _row("b", 0.6)])
    write_metrics_csv(run / "fold_1" / "metrics.csv", [_row("c", 0.9), _row("d", 0.7)])
    (run / "provenance.json").write_text(json.dumps({"medseg_version": "0", "command": "medseg run p.yaml"}))
    (run / "timing.json").write_text(json.dumps({"total_seconds": 90.0}))
    return run


def _report(run: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["report", str(run)])
    return result.exit_code, result.output


def test_an_intact_folder_gives_a_report(tmp_path: Path) -> None:
    run = _folder(tmp_path)
    code, out = _report(run)
    assert code == 0, out
    assert "- wall time: 1.5 min" in (run / "report.md").read_text()


def _cut(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: text.rindex("0.7") + 2])  # in the middle of the last row


def _header_only(path: Path) -> None:
    path.write_text(path.read_text().splitlines()[0] + "\n")


def _word_for_dice(path: Path) -> None:
    path.write_text(path.read_text().replace("0.700000", "abc", 1))


def _empty(path: Path) -> None:
    path.write_text("")


def _binary(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")


def _no_dice_column(path: Path) -> None:
    path.write_text(path.read_text().replace("dice", "Dice", 1))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (_cut, "line 3: {cut} fields, the header has {all} (the file was cut short?)"),
        (_header_only, "a header and no case"),
        (_word_for_dice, "line 3: dice 'abc' is not a number"),
        (_empty, "empty (no header, no case)"),
        (_binary, "not UTF-8 text"),
        (_no_dice_column, "no column dice in its header"),
    ],
)
def test_a_damaged_metrics_csv_is_named_with_what_is_wrong(tmp_path: Path, damage, said: str) -> None:
    run = _folder(tmp_path)
    path = run / "fold_1" / "metrics.csv"
    header = path.read_text().splitlines()[0].split(",")
    damage(path)
    lines = path.read_text().splitlines() if path.read_bytes().isascii() else []
    said = said.format(cut=len(lines[-1].split(",")) if lines else 0, all=len(header))
    code, out = _report(run)
    assert code == 1, out
    assert "fold_1/metrics.csv" in out and said in out, out
    assert "delete it and run the study again" in out and "unexpected" not in out
    assert not (run / "report.html").exists() and not (run / "summary.json").exists()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"medseg_version": "0", "command": ', "not valid JSON (Expecting value at line 1, column 36)"),
        ("", "not valid JSON (Expecting value at line 1, column 1)"),
        ('["medseg", "run"]', "holds a JSON list, not an object"),
        ("[" * 100000, "nested too deeply to be read"),
    ],
)
def test_a_malformed_provenance_json_is_named_with_what_is_wrong(
    tmp_path: Path, text: str, said: str
) -> None:
    run = _folder(tmp_path)
    (run / "provenance.json").write_text(text)
    code, out = _report(run)
    assert code == 1, out
    assert "provenance.json" in out and said in out and "unexpected" not in out, out
    assert "delete it (the report then shows no provenance)" in out
    assert not (run / "report.html").exists()


def test_other_damaged_files_of_the_folder_are_named_too(tmp_path: Path) -> None:
    run = _folder(tmp_path)
    (run / "timing.json").write_text('{"total_seconds": "abc"}')  # valid JSON, not a number: shown as ?
    (run / "fold_0" / "history.csv").write_text("epoch,train_loss\n1,0.5\n2,abc\n")
    code, out = _report(run)
    assert code == 1 and "fold_0/history.csv, line 3: train_loss 'abc' is not a number" in out, out
    (run / "fold_0" / "history.csv").unlink()
    (run / "run_state.json").write_text('{"folds": [1, 2]}')
    code, out = _report(run)
    assert code == 1 and "run_state.json: 'folds' is not an object" in out, out
    (run / "run_state.json").unlink()
    (run / "config.yaml").write_text("evaluate: {n_worst: many}\n")
    code, out = _report(run)
    assert code == 1 and "config.yaml: evaluate.n_worst 'many' is not a whole number" in out, out
    (run / "config.yaml").write_text("evaluate: [\n")
    code, out = _report(run)
    assert code == 1 and "config.yaml: not valid YAML" in out, out
    (run / "config.yaml").unlink()
    code, out = _report(run)
    assert code == 0, out
    assert "- wall time: ?" in (run / "report.md").read_text()
