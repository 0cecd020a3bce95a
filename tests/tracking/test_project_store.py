"""The project store: every study of a project in one sqlite store beside the run folders, written
by several processes at once under its lock; the per-folder store as an option; a study goes on in
the store it started in."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest

from medseg.tracking.store import folder_store, relocate, study_uri
from medseg.tracking.tracker import Tracker
from tests.conftest import tiny_config

EPOCHS = 15


def _study(project: Path, folder: str, start: object = None, **overrides: object) -> str:
    """Log a study into ``project/folder`` as ``medseg run`` does (parent, two folds, epochs); its
    parent run id."""
    cfg = tiny_config(project, project / folder, **overrides)
    if start is not None:
        start.wait()  # type: ignore[attr-defined]
    tracker = Tracker(cfg, project / folder)
    tracker.start_parent(folder, cfg.model_dump(mode="json"))
    (project / folder).mkdir(parents=True, exist_ok=True)
    state = {"parent_run_id": tracker.parent_id, "folds": {}, "experiment_id": tracker.experiment_id}
    state["mlflow_store"] = tracker.store_record()
    (project / folder / "run_state.json").write_text(json.dumps(state))
    for fold in (0, 1):
        run_id = tracker.start_fold(fold)
        for epoch in range(1, EPOCHS + 1):
            tracker.log_metrics(run_id, {"epoch/train_loss": 1.0 / epoch}, step=epoch)
        tracker.log_metrics(run_id, {"test/dice/mean": 0.5 + 0.1 * fold})
        tracker.end(run_id)
    tracker.end(tracker.parent_id)
    return str(tracker.parent_id)


def test_studies_of_a_project_share_one_store_beside_their_folders(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    project = tmp_path / "runs"
    ids = [_study(project, name) for name in ("a", "b")]
    assert (project / "mlflow.db").is_file() and not (project / "a" / "mlflow.db").exists()
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name != "Default"]
    assert exp.name == "tiny" and exp.artifact_location == (project / "mlartifacts").resolve().as_uri()
    runs = client.search_runs([exp.experiment_id], "tags.`medseg.kind` = 'pipeline'")
    assert sorted(r.info.run_name for r in runs) == ["a", "b"] and {r.info.run_id for r in runs} == set(ids)
    state = json.loads((project / "a" / "run_state.json").read_text())
    assert state["mlflow_store"] == "../mlflow.db"  # relative: the project may move
    project_uri = f"sqlite:///{project.resolve() / 'mlflow.db'}"
    assert folder_store(project / "a").uri == folder_store(project).uri == project_uri
    assert (project / ".locks" / "mlflow.db.lock").is_file()  # writes held the store's lock


def test_the_per_folder_store_is_an_option(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    _study(tmp_path, "own", tracking={"store": "run"})
    assert (tmp_path / "own" / "mlflow.db").is_file() and not (tmp_path / "mlflow.db").exists()
    assert json.loads((tmp_path / "own" / "run_state.json").read_text())["mlflow_store"] == "mlflow.db"
    exp = MlflowClient(folder_store(tmp_path / "own").uri).get_experiment_by_name("tiny")
    assert exp.artifact_location == (tmp_path / "own" / "mlartifacts").resolve().as_uri()


def test_a_study_goes_on_in_the_store_it_started_in(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, tmp_path / "old", tracking={"store": "run"})
    _study(tmp_path, "old", tracking={"store": "run"})
    project_cfg = tiny_config(tmp_path, tmp_path / "old")  # the default now: project
    own = f"sqlite:///{(tmp_path / 'old' / 'mlflow.db').resolve()}"
    assert study_uri(project_cfg.tracking, tmp_path / "old") == own
    # a folder from before project stores: its own mlflow.db, nothing recorded
    state = json.loads((tmp_path / "old" / "run_state.json").read_text())
    del state["mlflow_store"]
    (tmp_path / "old" / "run_state.json").write_text(json.dumps(state))
    assert study_uri(project_cfg.tracking, tmp_path / "old") == own
    assert folder_store(tmp_path / "old").uri == own
    # a new study (no pipeline run recorded) goes where tracking.store says
    new = tmp_path / "new"
    assert study_uri(project_cfg.tracking, new) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert study_uri(cfg.tracking, new) == f"sqlite:///{(new / 'mlflow.db').resolve()}"


def test_a_moved_project_keeps_its_artifacts(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    project = tmp_path / "runs"
    parent = _study(project, "a")
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (project / "f.txt").write_text("x")
    client.log_artifact(parent, str(project / "f.txt"))
    moved = tmp_path / "elsewhere" / "runs"
    shutil.copytree(project, moved)
    shutil.rmtree(project)
    store = folder_store(moved / "a")
    assert store.own and store.uri == f"sqlite:///{moved.resolve() / 'mlflow.db'}"
    assert relocate(moved) > 0
    moved_client = MlflowClient(store.uri)
    artifacts = moved_client.get_run(parent).info.artifact_uri
    assert artifacts.startswith((moved / "mlartifacts").resolve().as_uri())
    assert [f.path for f in moved_client.list_artifacts(parent)] == ["f.txt"]


@pytest.mark.slow  # three processes importing MLflow: about a minute on two shared cores
def test_studies_started_at_once_in_a_new_project_store(tmp_path: Path) -> None:
    """Three processes create the store, the experiment and their runs together: under the store's
    lock none fails (sqlite would say "database is locked", the experiment would be created twice)."""
    from mlflow.tracking import MlflowClient

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    jobs = [ctx.Process(target=_study, args=(tmp_path, name, start)) for name in ("a", "b", "c")]
    for job in jobs:
        job.start()
    start.set()
    for job in jobs:
        job.join(timeout=300)
    assert [job.exitcode for job in jobs] == [0, 0, 0]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name != "Default"]  # created once
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["medseg.kind"] for r in runs) == ["fold"] * 6 + ["pipeline"] * 3
    for fold_run in (r for r in runs if r.data.tags["medseg.kind"] == "fold"):
        steps = [m.step for m in client.get_metric_history(fold_run.info.run_id, "epoch/train_loss")]
        assert sorted(steps) == list(range(1, EPOCHS + 1))


@pytest.mark.parametrize("content", [b"", b"not a database, a text file\n" * 10])
def test_a_damaged_store_is_named_in_one_line(tmp_path: Path, content: bytes) -> None:
    from medseg.errors import MedsegError

    _study(tmp_path, "a")
    (tmp_path / "mlflow.db").write_bytes(content)
    with pytest.raises(MedsegError, match=r"mlflow.db: (empty file \(0 bytes\)|not an MLflow store)"):
        folder_store(tmp_path / "a")
