"""The demo pipeline end to end with tiny settings: every output file and the MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from medseg.cli import app
from medseg.io.raster import read_raster

ROOT = Path(__file__).resolve().parents[2]


def test_demo_pipeline_end_to_end(tmp_path: Path) -> None:
    out, data = tmp_path / "run", tmp_path / "data"
    args = [
        "run",
        str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={out}",
        "--set", f"data.root={data}",
        "--set", "data.synthetic={n_cases: 16, height: 48, width: 64, seed: 1}",
        "--set", "transforms.spatial_size=[32, 48]",
        "--set", "split.n_folds=2",
        "--set", "train.epochs=2",
        "--set", "train.batch_size=4",
        "--set", "train.val_fraction=0.2",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    for name in ("config.yaml", "datalist.json", "splits.json", "preview.png", "timing.json", "report.html",
                 "report.md", "summary.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert (out.parent / "mlflow.db").is_file()  # the project store beside the run folder
    splits = json.loads((out / "splits.json").read_text())
    for k in (0, 1):
        fold = out / f"fold_{k}"
        for name in (
            "checkpoints/best.pt",
            "checkpoints/last.pt",
            "history.csv",
            "metrics.csv",
            "inner_split.json",
        ):
            assert (fold / name).is_file(), f"fold_{k}/{name}"
        preds = sorted(p.stem for p in (fold / "predictions").glob("*.png"))
        assert preds == sorted(splits[k]["val"])
        pred = read_raster(fold / "predictions" / f"{preds[0]}.png")
        assert pred.shape == (48, 64)  # original size, not the training size
        assert set(np.unique(pred)) <= {0, 255}
        assert sorted(p.stem for p in (fold / "overlays").glob("*.png")) == preds  # every held-out case
        assert len((fold / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["folds"]) == {"0", "1"}
    assert summary["classes"] == ["skin_lesion"] and summary["distance_unit"] == "px"
    assert summary["overall"]["skin_lesion"]["dice"]["n"] == 16
    metrics = (out / "fold_0" / "metrics.csv").read_text().splitlines()
    assert metrics[0].startswith("case,label,class,") and ",1,skin_lesion," in metrics[1]
    assert {"auroc", "spearman", "n", "n_low"} <= set(summary["uncertainty"])
    assert summary["uncertainty"]["n"] == 16

    from ..conftest import study_runs

    client, runs = study_runs(out)
    parents = [r for r in runs if r.data.tags.get("medseg.kind") == "pipeline"]
    folds = [r for r in runs if r.data.tags.get("medseg.kind") == "fold"]
    assert len(parents) == 1 and len(folds) == 2
    parent = parents[0]
    assert all(f.data.tags["mlflow.parentRunId"] == parent.info.run_id for f in folds)
    assert parent.data.metrics["cv/dice/mean"] == summary["fold_mean"]["mean"]["dice"]["mean"]
    assert (
        parent.data.metrics["cv/dice/skin_lesion/mean"] == summary["fold_mean"]["skin_lesion"]["dice"]["mean"]
    )
    assert parent.data.params["train.epochs"] == "2"
    for f in folds:
        assert len(client.get_metric_history(f.info.run_id, "epoch/train_loss")) == 2
        assert {"test/dice/skin_lesion", "test/hd95/skin_lesion", "test/dice/mean", "val/best_epoch"} <= set(
            f.data.metrics
        )
        artifacts = {a.path for a in client.list_artifacts(f.info.run_id)}
        assert {"metrics.csv", "history.csv", "checkpoints", "overlays"} <= artifacts
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "splits.json", "preview.png", "report.html", "summary.json"} <= parent_artifacts

    # the report can be rebuilt from the run folder alone
    (out / "report.html").unlink()
    assert CliRunner().invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").is_file()


def test_preview_command_writes_the_grid(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "preview",
            str(ROOT / "pipelines" / "demo.yaml"),
            "--set", f"output_dir={tmp_path / 'run'}",
            "--set", f"data.root={tmp_path / 'data'}",
            "--set", "data.synthetic={n_cases: 6, height: 48, width: 64}",
            "--set", "split.n_folds=2",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    grid = read_raster(tmp_path / "run" / "preview.png")
    assert grid.ndim == 3 and grid.shape[0] > 200
