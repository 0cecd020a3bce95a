"""`medseg compare` against a real MLflow sqlite store holding several pipeline runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.errors import MedsegError
from medseg.tracking.compare import collect_runs, write_comparison
from medseg.tracking.tracker import Tracker
from tests.conftest import tiny_config

FOLD_DICE = {"lr-small": [0.80, 0.84], "lr-mid": [0.90, 0.92], "lr-big": [0.70, 0.60]}


def _store(tmp_path: Path) -> str:
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    for name, lr in zip(FOLD_DICE, (1e-4, 1e-3, 1e-1), strict=True):
        tracking = {"uri": uri, "experiment": "study"}
        cfg = tiny_config(tmp_path, tmp_path / name, tracking=tracking, train={"optimizer": {"lr": lr}})
        tracker = Tracker(cfg, tmp_path / name)
        tracker.start_parent(name, cfg.model_dump(mode="json"))
        for fold, dice in enumerate(FOLD_DICE[name]):
            run_id = tracker.start_fold(fold)
            tracker.log_metrics(run_id, {"test_dice": dice, "test_hd95": 10 * (1 - dice)})
            tracker.end(run_id)
        tracker.end(tracker.parent_id)
    return uri


def test_runs_are_ranked_with_fold_statistics_and_differing_keys(tmp_path):
    uri = _store(tmp_path)
    runs = collect_runs(uri, ["study"], [], [], "test_dice")
    assert len(runs) == 3
    paths = write_comparison(runs, "dice", tmp_path / "cmp")
    with open(paths["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [Path(r["run"]).name for r in rows] == ["lr-mid", "lr-small", "lr-big"]  # run folders
    assert float(rows[0]["dice_mean"]) == pytest.approx(0.91)
    assert float(rows[2]["dice_std"]) == pytest.approx(np.std([0.7, 0.6]))
    assert rows[0]["n_folds"] == "2"
    assert "train.optimizer.lr" in rows[0] and rows[0]["train.optimizer.lr"] == "0.001"
    assert "output_dir" not in rows[0] and "train.epochs" not in rows[0]  # same everywhere or ignored
    assert "Configuration keys that differ: `train.optimizer.lr`" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    # distances rank lowest first
    hd = collect_runs(uri, ["study"], [], [], "test_hd95")
    with open(write_comparison(hd, "hd95", tmp_path / "cmp2")["csv"]) as fh:
        assert [Path(r["run"]).name for r in csv.DictReader(fh)] == ["lr-mid", "lr-small", "lr-big"]


def test_run_ids_and_clear_errors(tmp_path):
    uri = _store(tmp_path)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("study")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`medseg.kind` = 'pipeline'")
    fold = client.search_runs([exp.experiment_id], filter_string="tags.`medseg.kind` = 'fold'")[0]
    runs = collect_runs(uri, [], [parents[0].info.run_id], [], "test_dice")
    assert len(runs) == 1 and len(runs[0].folds) == 2
    with pytest.raises(MedsegError, match="is a fold run"):
        collect_runs(uri, [], [fold.info.run_id], [], "test_dice")
    with pytest.raises(MedsegError, match="no experiment 'nope'.*known: .*study"):
        collect_runs(uri, ["nope"], [], [], "test_dice")


def test_cli_compares_run_folders_or_a_whole_project_store_labelled_by_folder(tmp_path, monkeypatch):
    """Run folders logged to the project store beside them (``run_state.json`` records it), labelled
    by folder, not by run name or start time; the project folder gives every study in it."""
    monkeypatch.chdir(tmp_path)  # labels are relative to the current folder
    for name, dice in (("a", 0.5), ("b", 0.9)):
        cfg = tiny_config(tmp_path, tmp_path / name, seed=1 if name == "a" else 2)
        tracker = Tracker(cfg, tmp_path / name)
        tracker.start_parent(f"{name}-20261204-133556", cfg.model_dump(mode="json"))
        run_id = tracker.start_fold(0)
        tracker.log_metrics(run_id, {"test/dice/mean": dice})
        tracker.end(run_id)
        tracker.end(tracker.parent_id)
        state = {"parent_run_id": tracker.parent_id, "experiment_id": tracker.experiment_id}
        (tmp_path / name).mkdir()
        (tmp_path / name / "run_state.json").write_text(json.dumps({**state, "mlflow_store": "../mlflow.db"}))
    assert (tmp_path / "mlflow.db").is_file() and not (tmp_path / "a" / "mlflow.db").exists()
    for given in (["a", "b"], ["."]):
        out = tmp_path / f"cmp-{len(given)}"
        result = CliRunner().invoke(app, ["compare", *given, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert result.output.index("| 1 |") < result.output.index("| 2 |")
        assert "`seed`" in result.output and "20261204" not in result.output
        with open(out / "comparison.csv") as fh:
            assert [(r["run"], r["dice_mean"]) for r in csv.DictReader(fh)] == [
                ("b", "0.900000"),
                ("a", "0.500000"),
            ]
    bad = CliRunner().invoke(app, ["compare", str(tmp_path / "nothing")])
    assert bad.exit_code == 1 and "no MLflow store: neither a run folder" in bad.output
