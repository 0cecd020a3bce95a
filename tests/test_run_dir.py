"""The run-folder layout and run_state.json, known in one module."""

from __future__ import annotations

import json
from pathlib import Path

from medseg.run_dir import RunDir


def test_folds_are_found_in_numeric_order_and_finished_when_scored(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for k in (10, 2, 0):
        run.fold(k).checkpoints.mkdir(parents=True)
        run.fold(k).best.write_bytes(b"x")
    (tmp_path / "fold_x").mkdir()  # not a fold
    run.fold(2).metrics.write_text("case,label\n")
    run.fold(10).metrics.write_text("case,label\n")
    assert [f.index for f in run.folds()] == [0, 2, 10]
    assert [f.index for f in run.finished_folds()] == [2, 10]
    run.fold(10).best.unlink()
    assert [f.index for f in run.finished_folds()] == [2]
    assert [f.index for f in run.scored_folds()] == [2, 10]


def test_state_round_trip_and_done_folds(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_state() == {"parent_run_id": None, "folds": {}}
    state = {"parent_run_id": "abc", "folds": {"0": {"run_id": "r0", "done_epochs": 5}}}
    run.write_state(state)
    assert json.loads(run.state_file.read_text()) == state == run.read_state()
    assert not run.fold_is_done(state, 0, 5)  # not scored yet
    run.fold(0).path.mkdir()
    run.fold(0).metrics.write_text("case,label\n")
    assert run.fold_is_done(state, 0, 5) and not run.fold_is_done(state, 0, 6)  # more epochs extend it
    assert not run.fold_is_done(state, 1, 5)


def test_an_unreadable_state_starts_afresh(tmp_path: Path, caplog) -> None:
    run = RunDir(tmp_path)
    run.state_file.write_text("{not json")
    assert run.read_state() == {"parent_run_id": None, "folds": {}}
    assert "unreadable" in caplog.text


def test_prediction_names_follow_the_workflow(tmp_path: Path) -> None:
    fold = RunDir(tmp_path).fold(3)
    assert fold.prediction("c1", 2) == tmp_path / "fold_3" / "predictions" / "c1.png"
    assert fold.prediction("c1", 3) == tmp_path / "fold_3" / "predictions" / "c1.nii.gz"
