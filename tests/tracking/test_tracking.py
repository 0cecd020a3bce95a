from __future__ import annotations

from pathlib import Path

from medseg.tracking.tracker import Tracker, flatten
from tests.conftest import tiny_config


def test_flatten_nested_settings() -> None:
    assert flatten({"train": {"epochs": 2, "loss": {"name": "DiceCE"}}, "seed": 0, "x": {}}) == {
        "train.epochs": 2,
        "train.loss.name": "DiceCE",
        "seed": 0,
        "x": {},
    }


def test_parent_and_nested_fold_runs_in_a_sqlite_store(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = tiny_config(tmp_path, tmp_path / "run")
    tracker = Tracker(cfg, tmp_path / "run")
    tracker.start_parent("p", cfg.model_dump(mode="json"))
    fold = tracker.start_fold(0)
    for epoch in (1, 2, 3):
        tracker.log_metrics(fold, {"train_loss": 1.0 / epoch, "val_dice": float("nan")}, step=epoch)
    (tmp_path / "a.txt").write_text("x")
    tracker.log_artifact(fold, tmp_path / "a.txt")
    tracker.end(fold)
    tracker.end(tracker.parent_id)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")  # the project store
    exp = client.get_experiment_by_name("tiny")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"p", "fold_0"}
    assert runs["fold_0"].data.tags["mlflow.parentRunId"] == runs["p"].info.run_id
    assert runs["p"].data.params["train.epochs"] == "1"
    history = client.get_metric_history(runs["fold_0"].info.run_id, "train_loss")
    assert [(m.step, round(m.value, 4)) for m in history] == [(1, 1.0), (2, 0.5), (3, 0.3333)]
    assert "val_dice" not in runs["fold_0"].data.metrics  # NaN is not logged
    assert [f.path for f in client.list_artifacts(runs["fold_0"].info.run_id)] == ["a.txt"]
    assert runs["fold_0"].info.status == "FINISHED"


def test_disabled_tracking_writes_nothing(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path / "run", tracking={"enabled": False})
    tracker = Tracker(cfg, tmp_path / "run")
    tracker.start_parent("p", {})
    tracker.log_metrics(tracker.start_fold(0), {"a": 1.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unreachable_tracking_server_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    import pytest

    from medseg.errors import MedsegError

    with socket.socket() as sock:  # a free local port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = tiny_config(tmp_path, tmp_path / "run", tracking={"uri": f"http://127.0.0.1:{port}"})
    with pytest.raises(MedsegError, match="no MLflow server answers at http://127.0.0.1"):
        Tracker(cfg, tmp_path / "run")


def test_any_tracking_uri_from_config(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    cfg = tiny_config(tmp_path, tmp_path / "run", tracking={"uri": uri, "experiment": "shared-exp"})
    tracker = Tracker(cfg, tmp_path / "run")
    tracker.start_parent("p", {"a": 1})
    tracker.end(tracker.parent_id)
    assert not (tmp_path / "run" / "mlflow.db").exists() and not (tmp_path / "mlflow.db").exists()
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("shared-exp").experiment_id]
    )
    assert [r.info.run_name for r in runs] == ["p"]


def test_fold_run_context_ends_finished_failed_or_killed_and_resumes(tmp_path: Path) -> None:
    import pytest
    from mlflow.tracking import MlflowClient

    cfg = tiny_config(tmp_path, tmp_path / "run")
    tracker = Tracker(cfg, tmp_path / "run")
    tracker.start_parent("p", {})
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ValueError), tracker.fold_run(0, None) as failed:
        raise ValueError("boom")
    assert client.get_run(failed).info.status == "FAILED"
    with pytest.raises(KeyboardInterrupt), tracker.fold_run(1, None) as killed:
        raise KeyboardInterrupt
    assert client.get_run(killed).info.status == "KILLED"
    with tracker.fold_run(0, failed) as resumed:  # the same run, resumed
        assert client.get_run(resumed).info.status == "RUNNING"
    assert resumed == failed and client.get_run(resumed).info.status == "FINISHED"
    with tracker.fold_run(2, "no-such-run") as fresh:
        pass
    assert fresh not in (failed, killed) and client.get_run(fresh).data.tags["medseg.fold"] == "2"
