"""Jobs that share a folder must share its settings: a fold job whose model-changing settings differ
from the folder's config.yaml is refused even before any fold has weights, and a predict part whose
part count differs from the batch already in the output folder is refused, naming both."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from medseg.config.load import dump_config
from medseg.errors import ConfigError, MedsegError
from medseg.infer import parts
from medseg.infer.batch import predict_folder
from medseg.pipeline import run
from medseg.tracking.models import load_bundle

from ..conftest import ROOT, make_dataset, tiny_config
from ..infer.conftest import CPU, untrained_run_dir


def medseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "medseg", *args]


TINY_2D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]


@pytest.fixture
def data(tmp_path):
    return make_dataset(tmp_path / "d", n_cases=12, height=32, width=40)


def _with_folds(cfg, folds):
    return cfg.model_copy(update={"split": cfg.split.model_copy(update={"folds": folds})})


def test_a_fold_job_with_other_settings_is_refused_before_any_fold_has_weights(data, tmp_path):
    out = tmp_path / "run"
    first = tiny_config(data, out, tracking={"enabled": False})
    out.mkdir()
    (out / "config.yaml").write_text(dump_config(first))  # fold 0's job has set up, not yet trained
    other = tiny_config(
        data,
        out,
        tracking={"enabled": False},
        transforms={"spatial_size": [48, 48]},
        train={"epochs": 1, "batch_size": 4, "val_fraction": 0.2, "optimizer": {"lr": 0.05}},
    )
    with pytest.raises(ConfigError) as err:
        run(_with_folds(other, [1]))
    assert "these differ: train.optimizer.lr, transforms.spatial_size." in str(err.value)
    assert "a study whose fold jobs train with other settings" in str(err.value)
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["optimizer"]["lr"] == 0.001
    assert not (out / "fold_1").exists()
    # the folder's own settings, or ones that leave models alone, are welcome
    preview = first.preview.model_copy(update={"n_draws": 1})
    run(_with_folds(first.model_copy(update={"preview": preview}), [1]))
    assert (out / "fold_1" / "metrics.csv").is_file()


@pytest.mark.integration
def test_two_fold_jobs_started_together_with_different_settings_one_is_refused(data, tmp_path):
    out = tmp_path / "run"
    base = [
        "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={out}", "--set", f"data.root={data}",
        "--set", "data.synthetic=null", "--set", "split.n_folds=2", "--set", "train.epochs=1",
        "--set", "train.batch_size=4", "--set", "evaluate.n_worst=1", "--set", "preview.n_draws=1",
        *[a for s in TINY_2D for a in ("--set", s)], "--set", "tracking.enabled=false",
    ]  # fmt: skip
    plain = medseg(*base, "--fold", "0", "--set", "transforms.spatial_size=[32, 32]")
    changed = medseg(*base, "--fold", "1", "--set", "train.optimizer.lr=0.05")
    changed += ["--set", "transforms.spatial_size=[32, 48]"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "cwd": ROOT}
    jobs = [subprocess.Popen(cmd, **pipes) for cmd in (plain, changed)]  # type: ignore[call-overload]
    results = [job.communicate(timeout=600) for job in jobs]
    codes = sorted(job.returncode for job in jobs)
    assert codes == [0, 1], results
    refused = next(err for job, (_, err) in zip(jobs, results, strict=True) if job.returncode == 1)
    assert "these differ: train.optimizer.lr, transforms.spatial_size" in refused
    assert "Traceback" not in refused


@pytest.fixture(scope="module")
def model_and_inputs(synthetic_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parts")
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp / "run")
    inputs = tmp / "in"
    inputs.mkdir()
    for f in sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").iterdir())[:5]:
        (inputs / f.name).write_bytes(f.read_bytes())
    return run_dir, inputs


def test_a_part_count_other_than_the_folders_unfinished_batch_is_refused(model_and_inputs, tmp_path):
    run_dir, inputs = model_and_inputs
    bundle, out = load_bundle(str(run_dir)), tmp_path / "out"
    out.mkdir()
    parts.claim(out, (2, 2))  # part 2/2 has started, nothing is written yet
    with pytest.raises(MedsegError) as err:
        predict_folder(bundle, inputs, out, CPU, workers=0, part=(1, 3))
    message = str(err.value)
    assert "a batch of 2 parts (--part I/2)" in message and "this job is --part 1/3" in message
    assert "part(s) 1/2, 2/2 have not finished" in message
    assert not list(out.glob("manifest*")) and not list(out.glob("*.png"))  # refused before any input
    predict_folder(bundle, inputs, out, CPU, workers=0, part=(1, 2))
    with pytest.raises(MedsegError, match=r"part\(s\) 2/2 have not finished; this job is --part 3/3"):
        predict_folder(bundle, inputs, out, CPU, workers=0, part=(3, 3))
    second = predict_folder(bundle, inputs, out, CPU, workers=0, part=(2, 2))
    assert second["merged"]["done"] == 5
    # once that batch is whole, a batch of another count may follow; it finds every input done
    again = predict_folder(bundle, inputs, out, CPU, workers=0, part=(1, 3))
    assert (again["done"], again["done_earlier"]) == (0, 2)
    assert parts.recorded_parts(out) == 3
