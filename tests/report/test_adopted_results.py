"""A study whose post-processing is chosen from cross-validation (``infer.largest_component:
auto``) reports the results ``predict`` delivers: after the adopted post-processing, with the raw
figures beside them; and its review threshold, chosen from its held-out cases, is what ``predict``
flags by.

One tiny real run of the demo pipeline; its held-out predictions are made the reference plus a
far-away false island and a 2x2 hole (half the lesion missing in every other case), so that keeping
the largest component and then filling holes (``infer.fill_holes: auto``) are adopted and change
every case's Dice by a known amount.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ..conftest import ROOT


def _with_island(ref: np.ndarray, cut: bool) -> np.ndarray:
    """The reference as a class map, half of it missing when ``cut``, with a 2x2 hole inside and a
    3x3 island in an empty corner."""
    from scipy import ndimage

    pred = (ref > 0).astype(np.uint8)
    if cut:
        rows = np.nonzero(pred.any(1))[0]
        pred[rows[len(rows) // 2] :] = 0
    inside = np.argwhere(ndimage.binary_erosion(pred, np.ones((3, 3)), iterations=2))
    r, c = inside[len(inside) // 2]  # every pixel within 2 of it is lesion: the hole is enclosed
    pred[r : r + 2, c : c + 2] = 0
    for corner in ((slice(0, 3), slice(0, 3)), (slice(-3, None), slice(-3, None))):
        if not (ref[corner] > 0).any():
            pred[corner] = 1
            return pred
    raise AssertionError("no empty corner for the island")


@pytest.fixture(scope="module")
def adopted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medseg.config.load import load_pipeline
    from medseg.infer.heldout import write_prediction
    from medseg.pipeline import fold as fold_stage
    from medseg.pipeline import run

    real = fold_stage.predict_heldout

    def with_islands(cfg, models, cases, fold, device):
        for i, case in enumerate(real(cfg, models, cases, fold, device)):
            case.pred = _with_island(case.ref, cut=i % 2 == 1)
            write_prediction(cfg, case.path, case.pred, None)
            yield case

    tmp = tmp_path_factory.mktemp("adopted")
    overrides = [
        f"output_dir={tmp / 'run'}",
        f"data.root={tmp / 'data'}",
        "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 5}",
        "transforms.spatial_size=[32, 48]",
        "split.n_folds=2",
        "train.epochs=1",
        "train.batch_size=4",
        "train.val_fraction=0.2",
        "infer.largest_component=auto",
        "infer.fill_holes=auto",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fold_stage, "predict_heldout", with_islands)
        return run(load_pipeline(ROOT / "pipelines" / "demo.yaml", overrides))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_the_folds_results_are_the_post_processed_predictions_with_the_raw_kept(adopted_run: Path) -> None:
    from medseg.io.raster import read_raster
    from medseg.run_dir import RunDir

    run = RunDir(adopted_run)
    choice = json.loads(run.postprocessing.read_text())
    assert choice["value"] == "foreground" and choice["fill_holes"] is True
    assert "then holes filled" in choice["reason"]
    written = yaml.safe_load(run.config.read_text())["infer"]
    assert (written["largest_component"], written["fill_holes"]) == ("foreground", True)  # what predict reads
    labels = {c.id: c.label.path for c in run.read_cases() if c.label is not None}
    for fold in run.folds():
        post, raw = _csv(fold.metrics), _csv(fold.metrics_raw)
        assert [r["case"] for r in post] == [r["case"] for r in raw] and post
        for p, r in zip(post, raw, strict=True):
            ref = read_raster(labels[p["case"]]) > 0
            delivered = read_raster(fold.prediction(p["case"], 2)) > 0
            predicted = read_raster(fold.predictions_raw / f"{p['case']}.png") > 0
            assert float(p["dice"]) == pytest.approx(_dice(delivered, ref), abs=1e-6)  # what is written
            assert float(r["dice"]) == pytest.approx(_dice(predicted, ref), abs=1e-6)
            assert float(p["dice"]) > float(r["dice"])  # the island is gone
            assert int(float(p["pred_voxels"])) == int(float(r["pred_voxels"])) - 9 + 4  # island out, hole in
            assert p["uncertainty"] == r["uncertainty"] != ""  # the flips' score, before post-processing
            overlay = fold.overlays / f"{p['case']}.png"  # drawn again, from the post-processed map
            assert overlay.stat().st_mtime >= (fold.predictions_raw / f"{p['case']}.png").stat().st_mtime


def test_summary_report_and_mlflow_give_the_post_processed_figures_and_the_raw_beside(
    adopted_run: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    from medseg.tracking.store import folder_store

    summary = json.loads((adopted_run / "summary.json").read_text())
    post = [float(r["dice"]) for k in (0, 1) for r in _csv(adopted_run / f"fold_{k}" / "metrics.csv")]
    raw = [float(r["dice"]) for k in (0, 1) for r in _csv(adopted_run / f"fold_{k}" / "metrics_raw.csv")]
    overall, raw_overall = (
        summary["overall"]["skin_lesion"]["dice"],
        summary["raw"]["overall"]["skin_lesion"]["dice"],
    )
    assert overall["mean"] == pytest.approx(np.mean(post)) and raw_overall["mean"] == pytest.approx(
        np.mean(raw)
    )
    assert overall["mean"] > raw_overall["mean"]
    md = (adopted_run / "report.md").read_text()
    assert f"| all cases | {overall['mean']:.4f} ± " in md
    assert f"| all cases, raw (before post-processing) | {raw_overall['mean']:.4f} ± " in md
    assert "give the post-processed results, what `medseg predict` delivers" in md
    page = (adopted_run / "report.html").read_text()
    assert "predictions after the adopted post-processing" in page and "all cases, raw (before" in page
    state = json.loads((adopted_run / "run_state.json").read_text())
    client = MlflowClient(folder_store(adopted_run).uri)  # the project's store, beside the folder
    metrics = client.get_run(state["parent_run_id"]).data.metrics
    assert metrics["cv/dice/mean"] == pytest.approx(summary["fold_mean"]["mean"]["dice"]["mean"])
    assert metrics["cv_raw/dice/mean"] == pytest.approx(summary["raw"]["fold_mean"]["mean"]["dice"]["mean"])
    assert metrics["cv/dice/mean"] > metrics["cv_raw/dice/mean"]
    assert metrics["cv/review/threshold"] == pytest.approx(summary["review"]["threshold"])
    assert metrics["cv/review/catch_rate"] == pytest.approx(summary["review"]["catch_rate"])
    fold0 = client.get_run(state["folds"]["0"]["run_id"]).data.metrics
    assert fold0["test/dice/mean"] == pytest.approx(summary["folds"]["0"]["mean"]["dice"]["mean"])
    assert "wall time: ?" not in md and "- wall time: " in md  # timing.json is merged before the report


def test_the_study_stores_its_review_threshold_and_predict_flags_by_it(
    adopted_run: Path, tmp_path: Path
) -> None:
    from medseg.chains import original_size_transforms
    from medseg.infer.batch import predict_folder
    from medseg.infer.sliding import predict_label_scored
    from medseg.registry import build_inferer
    from medseg.run_dir import RunDir
    from medseg.tracking.models import load_bundle

    review = json.loads((adopted_run / "review.json").read_text())
    summary = json.loads((adopted_run / "summary.json").read_text())
    assert review == summary["review"] and review["n"] == 12 and review["n_low"] == 6  # the cut cases
    threshold = review["threshold"]
    assert threshold is not None and review["source"] == "study" and review["catch_rate"] >= 0.8
    assert (
        yaml.safe_load((adopted_run / "config.yaml").read_text())["predict"]["review_threshold"] == threshold
    )
    assert f"above {threshold}, chosen from the held-out cases" in (adopted_run / "report.md").read_text()
    inputs = tmp_path / "in"
    inputs.mkdir()
    cases = RunDir(adopted_run).read_cases()[:3]
    for case in cases:
        shutil.copy(case.images[0].path, inputs / case.images[0].path.name)
    bundle = load_bundle(str(adopted_run))
    assert bundle.cfg.predict.review_threshold == threshold
    predict_folder(bundle, inputs, tmp_path / "out", torch.device("cpu"), workers=0)
    rows = {r["key"]: r for r in _csv(tmp_path / "out" / "manifest.csv")}
    assert [r["review"] for r in rows.values()] == [
        "yes" if float(r["uncertainty"]) > threshold else "no" for r in rows.values()
    ]
    assert all(r["fold_disagreement"] != "" for r in rows.values())  # two fold models, shown beside
    # each input's score is the one a held-out case gets: its (first) fold model's test-time flips
    cfg, cpu = bundle.cfg, torch.device("cpu")
    first = bundle.load(cpu)[0]
    for case in cases:
        item = original_size_transforms(cfg.data, cfg.transforms, with_label=False)(
            case.item(with_label=False)
        )
        _, held_out = predict_label_scored(
            [first], item["image"], cfg, build_inferer(cfg.infer, cfg.roi_size), cpu, score_flips=True
        )
        row = next(r for k, r in rows.items() if k.startswith(case.images[0].path.stem))
        assert float(row["uncertainty"]) == pytest.approx(held_out, abs=2e-4)
    given = load_bundle(str(adopted_run), ["predict.review_threshold=0"])
    predict_folder(given, inputs, tmp_path / "out0", torch.device("cpu"), workers=0)
    flagged = _csv(tmp_path / "out0" / "manifest.csv")
    assert [r["review"] for r in flagged] == ["yes" if float(r["uncertainty"]) > 0 else "no" for r in flagged]
