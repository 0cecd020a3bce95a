"""A `medseg run` that fails after ingest once left config.yaml, datalist.json and splits.json, so a
rerun was refused (a fold job is held to config.yaml) or mixed its data with the failed attempt's.
Now a run that fails before any fold has weights removes the set-up files it wrote; one that fails
later keeps everything a resumed run needs."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from medseg.pipeline.run import run
from medseg.pipeline.stages import SET_UP

from ..conftest import make_dataset, tiny_config

run_module = importlib.import_module("medseg.pipeline.run")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "d", n_cases=8, height=32, width=40)


def _failing_at(fold: int, real=run_module.run_fold):  # type: ignore[no-untyped-def]
    def run_fold(cfg, run_dir, index, *args, **kwargs):  # type: ignore[no-untyped-def]
        if index == fold:
            raise OSError(28, "No space left on device")
        return real(cfg, run_dir, index, *args, **kwargs)

    return run_fold


def test_a_run_failing_before_any_weights_removes_the_set_up_it_wrote(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(run_module, "run_fold", _failing_at(0))
    with pytest.raises(OSError, match="No space left"):
        run(tiny_config(data, out, tracking={"enabled": False}))
    assert [name for name in SET_UP if (out / name).exists()] == []
    assert not list(out.glob("fold_*")) and not (out / ".locks").exists()
    # a fold job with other settings is not held to the failed attempt's config.yaml
    monkeypatch.setattr(run_module, "run_fold", _failing_at(1))
    cfg = tiny_config(data, out, seed=7, split={"n_folds": 2, "folds": [1]}, tracking={"enabled": False})
    with pytest.raises(OSError, match="No space left"):
        run(cfg)  # a ConfigError "these differ: seed" before


def test_files_an_earlier_run_wrote_and_a_started_fold_stay(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(run_module, "run_fold", _failing_at(1))
    with pytest.raises(OSError, match="No space left"):
        run(tiny_config(data, out, tracking={"enabled": False}))
    kept = {name for name in SET_UP if (out / name).exists()}
    assert {"config.yaml", "datalist.json", "splits.json", "provenance.json"} <= kept
    assert (out / "fold_0" / "checkpoints" / "best.pt").is_file()  # resume goes on from here
    monkeypatch.undo()
    run(tiny_config(data, out, tracking={"enabled": False}))
    assert (out / "fold_1" / "metrics.csv").is_file() and (out / "report.html").is_file()
