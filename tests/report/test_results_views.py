"""What a user looks at after a run, on one tiny real run of the demo pipeline: the report in a real
headless Chromium, the MLflow models (loaded back, registered, after the folder moved), the MLflow
UI of ``medseg ui``, and ``predict``'s review flag and fold disagreement on fold models made to
disagree."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from ..conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PROBE_HEAD = """<script>
window.__problems = [];
var __error = console.error;
console.error = function () { window.__problems.push('console.error: ' + Array.from(arguments).join(' '));
  __error.apply(console, arguments); };
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__problems.push(t && t !== window ? 'failed to load ' + (t.src || t.href) : 'error: ' + e.message);
}, true);
</script>"""
PROBE_END = """<script>
window.addEventListener('load', function () {
  var table = document.getElementById('cases');
  var rows = function () { return Array.from(table.tBodies[0].rows); };
  var shown = function () {
    return rows().filter(function (r) { return r.style.display !== 'none'; }).length;
  };
  var out = {width: document.documentElement.scrollWidth, body: document.body.scrollWidth,
             rows: rows().length, problems: window.__problems};
  var below = document.getElementById('f-below');
  below.value = '0.5'; below.dispatchEvent(new Event('input'));
  out.below_half = shown();
  below.value = ''; below.dispatchEvent(new Event('input'));
  table.tHead.rows[0].cells[3].click();
  out.sorted = rows().map(function (r) { return parseFloat(r.cells[3].getAttribute('data-v')); });
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medseg.config.load import load_pipeline
    from medseg.pipeline import run

    tmp = tmp_path_factory.mktemp("views")
    overrides = [
        f"output_dir={tmp / 'run'}",
        f"data.root={tmp / 'data'}",
        "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 3}",
        "transforms.spatial_size=[32, 48]",
        "split.n_folds=2",
        "train.epochs=2",
        "train.batch_size=4",
        "train.val_fraction=0.2",
        "tracking.store=run",  # a self-contained folder: moved below with its own store
    ]
    return run(load_pipeline(ROOT / "pipelines" / "demo.yaml", overrides))


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _render(page: Path, width: int = 1280) -> dict:
    probe = page.with_name("report_probe.html")
    text = page.read_text()
    text = text.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_END + "</body>", 1)
    probe.write_text(text)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},900",
           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run: {dom[-2000:]}"
    return dict(json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_report_fits_a_1280_px_window_without_errors_and_its_browser_sorts_and_filters(
    demo_run: Path,
) -> None:
    shown = _render(demo_run / "report.html")
    assert shown["problems"] == []
    assert shown["width"] <= 1280 and shown["body"] <= 1280
    assert shown["rows"] == 12  # every held-out case, one class
    dice = [r["dice"] for f in (0, 1) for r in _csv(demo_run / f"fold_{f}" / "metrics.csv")]
    assert shown["below_half"] == sum(float(d) < 0.5 for d in dice)
    assert shown["sorted"] == sorted(float(d) for d in dice)


def test_summary_and_mlflow_use_the_class_names(demo_run: Path) -> None:
    from mlflow.tracking import MlflowClient

    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["classes"] == ["skin_lesion"] and "mean" in summary["fold_mean"]
    assert summary["provenance"]["config_digest"] and summary["provenance"]["medseg_version"]
    state = json.loads((demo_run / "run_state.json").read_text())
    client = MlflowClient(f"sqlite:///{demo_run / 'mlflow.db'}")
    parent = client.get_run(state["parent_run_id"])
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the training views
    assert {"cv/dice/mean", "cv/dice/skin_lesion/mean", "cv/hd95/skin_lesion/std"} <= set(parent.data.metrics)
    assert not [k for k in parent.data.metrics if "label_" in k or k.startswith("cv_")]
    assert parent.data.tags["medseg.data_digest"] and "mlflow.source.name" in parent.data.tags
    assert [d.dataset.digest for d in parent.inputs.dataset_inputs] == [
        parent.data.tags["medseg.data_digest"]
    ]
    fold = client.get_run(state["folds"]["0"]["run_id"])
    assert {
        "epoch/train_loss",
        "epoch/lr",
        "epoch/val_dice",
        "val/best_epoch",
        "test/dice/skin_lesion",
        "test/dice/mean",
    } <= set(fold.data.metrics)


def test_mlflow_models_predict_as_the_checkpoints_and_survive_a_move(demo_run: Path, tmp_path: Path) -> None:
    import mlflow
    import mlflow.pytorch

    from medseg.config.load import load_pipeline
    from medseg.infer.ensemble import FoldEnsemble
    from medseg.tracking.mlflow_models import fold_network
    from medseg.tracking.store import relocate

    moved = tmp_path / "moved"
    shutil.copytree(demo_run, moved)
    assert relocate(moved) > 0  # the store now points into the moved folder
    state = json.loads((moved / "run_state.json").read_text())
    cfg = load_pipeline(moved / "config.yaml")
    x = torch.rand(2, 3, 32, 48)
    mlflow.set_tracking_uri(f"sqlite:///{moved / 'mlflow.db'}")
    nets = []
    for k in (0, 1):
        net = fold_network(cfg, moved / f"fold_{k}" / "checkpoints" / "best.pt")
        nets.append(net)
        logged = mlflow.pytorch.load_model(f"runs:/{state['folds'][str(k)]['run_id']}/model")
        with torch.no_grad():
            torch.testing.assert_close(logged(x), net(x))
    version = mlflow.register_model(f"runs:/{state['parent_run_id']}/model", "demo-ensemble")
    ensemble = mlflow.pytorch.load_model(f"models:/demo-ensemble/{version.version}")
    assert isinstance(ensemble, FoldEnsemble)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), FoldEnsemble(nets)(x))
    assert str(moved) in mlflow.get_run(state["parent_run_id"]).info.artifact_uri
    from medseg.tracking.models import load_bundle

    uri = f"sqlite:///{moved / 'mlflow.db'}"
    bundle = load_bundle(
        f"models:/demo-ensemble/{version.version}", tracking_uri=uri, download_dir=tmp_path / "dl"
    )
    assert sorted(bundle.checkpoints) == [0, 1] and bundle.cfg.class_names == {1: "skin_lesion"}


def test_medseg_ui_opens_the_training_view_of_a_moved_folder(demo_run: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(demo_run, moved)
    cmd = [sys.executable, "-m", "medseg", "ui", str(moved), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        url = line.strip().removeprefix("MLflow UI: ")
        assert re.fullmatch(
            r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs\?workflowType=machine_learning", url
        )
        with urllib.request.urlopen(url.split("/#")[0] + "/health", timeout=10) as answer:
            assert answer.status == 200
    finally:
        proc.terminate()  # by its own process id: it stops the server it started
        proc.wait(timeout=60)
    base = url.split("/#")[0]
    for _ in range(50):
        try:
            urllib.request.urlopen(base + "/health", timeout=1).close()
        except OSError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the MLflow server at {base} outlived `medseg ui`")


def _always(path: Path, foreground: bool) -> None:
    """Make a checkpoint predict one class everywhere: weights zeroed, the last bias decides."""
    state = torch.load(path, weights_only=True)
    for key, value in state["model"].items():
        if value.is_floating_point():
            value.zero_()
        if key.endswith("bias") and value.shape == (2,):
            value.copy_(torch.tensor([-10.0, 10.0] if foreground else [10.0, -10.0]))
    torch.save(state, path)


def test_the_report_of_the_demo_run_shows_its_n_worst_and_wall_time(demo_run: Path) -> None:
    page = (demo_run / "report.html").read_text()
    assert "The 3 worst cases (lowest Dice over all folds)" in page  # pipelines/demo.yaml: n_worst 3
    assert page.split("The 3 worst cases")[1].split("<h2>")[0].count("<figcaption>") == 3
    md = (demo_run / "report.md").read_text()
    assert "- wall time: " in md and "- wall time: ?" not in md  # timing.json is written first
    review = json.loads((demo_run / "review.json").read_text())
    assert review["n"] == 12 and review == json.loads((demo_run / "summary.json").read_text())["review"]


def test_predict_flags_by_the_first_models_flips_and_gives_the_fold_disagreement_beside(
    demo_run: Path, tmp_path: Path
) -> None:
    from medseg.infer.batch import predict_folder
    from medseg.tracking.models import load_bundle

    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in sorted((demo_run.parent / "data" / "ISIC2018_Task1-2_Training_Input").iterdir())[:2]:
        shutil.copy(f, inputs / f.name)
    agree, disagree = tmp_path / "agree", tmp_path / "disagree"
    for run, second in ((agree, True), (disagree, False)):
        shutil.copytree(demo_run, run / "run")
        _always(run / "run" / "fold_0" / "checkpoints" / "best.pt", True)
        _always(run / "run" / "fold_1" / "checkpoints" / "best.pt", second)
        bundle = load_bundle(
            str(run / "run"), ["predict.write_probabilities=true", "predict.review_threshold=0.1"]
        )
        summary = predict_folder(bundle, inputs, run / "out", torch.device("cpu"), workers=0)
        assert summary["done"] == 2
    rows = {name: _csv(tmp_path / name / "out" / "manifest.csv") for name in ("agree", "disagree")}
    assert [(r["uncertainty"], r["review"], r["fold_disagreement"]) for r in rows["agree"]] == [
        ("0.0", "no", "0.0")
    ] * 2
    # the first model says all lesion whichever way the input is flipped: its flips agree, so no
    # flag; the other says none: the fold models' consensus is empty, Dice 0 and 1, score 0.5
    disagree = [
        (float(r["uncertainty"]), r["review"], float(r["fold_disagreement"])) for r in rows["disagree"]
    ]
    assert disagree == [(0.0, "no", 0.5)] * 2
    first = rows["agree"][0]
    assert first["volume_unit"] == "px" and float(first["volume_skin_lesion"]) == 48 * 64
    assert first["components_skin_lesion"] == "1"
    import nibabel as nib

    probs = np.asarray(nib.load(tmp_path / "agree" / "out" / first["probabilities"]).dataobj)
    assert probs.shape == (48, 64, 2)  # laid out as the mask: (rows, columns, classes) of the picture
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert (probs[..., 1] > 0.99).all()  # both models: lesion everywhere
    assert json.loads((tmp_path / "disagree" / "out" / "summary.json").read_text())["review"] == 0
