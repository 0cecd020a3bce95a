"""`medseg plan` end to end on synthetic pictures: a pipeline file with reasons that validates, the
fingerprint beside it, and clear refusals of careless arguments."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from medseg.config.load import load_pipeline
from medseg.plan import budget as B
from medseg.runtime import native_bf16

from ..conftest import ROOT, fixed_step_times, make_dataset


def _plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medseg", "plan", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_plan_writes_a_valid_pipeline_with_reasons_and_the_fingerprint(tmp_path):
    """The real calibration from the command line. The data set is small but of 5 folds (8 cases
    of 6 patients with seed 2, the smallest synthetic pictures): on 2 cores the first candidate fits
    the budget and compiling cannot repay itself over so short a study (600 steps), so one candidate
    is measured and none compiled (tests/plan/test_calibrate.py compiles)."""
    data = make_dataset(tmp_path / "data", n_cases=8, seed=2, height=32, width=40)
    out = tmp_path / "plans" / "syn.yaml"
    proc = _plan(str(data), "--device", "cpu", "--budget", "2m", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"plan: {out}" in proc.stdout and "expected" in proc.stdout
    text = out.read_text()
    assert "# medseg plan" in text and "expected wall time of the 5-fold study" in text
    assert "# RGB: z-score per image and channel" in text
    assert "epochs:" in text and "folds fit 90% of the" in text
    cfg = load_pipeline(out)  # `medseg validate` accepts it
    raw = yaml.safe_load(text)
    assert cfg.transforms.spatial_size == raw["transforms"]["spatial_size"]
    assert cfg.infer.largest_component == "auto" and cfg.infer.fill_holes == "auto"
    assert cfg.train.epochs >= B.MIN_EPOCHS
    assert cfg.infer.tta_flips is True and "tta_flips: true  # the picture and its mirror images" in text
    assert cfg.fingerprint == (out.parent / "syn.fingerprint.json").resolve()
    fp = json.loads((out.parent / "syn.fingerprint.json").read_text())
    assert fp["n_cases"] == 8 and fp["median_shape"] == [32.0, 40.0] and "usable" not in fp
    summary = json.loads((out.parent / "syn.plan.json").read_text())
    assert summary["expected_seconds"] <= 120 * 0.9 + 1 and summary["seconds_per_step"] > 0
    # the machine's load beside the measurement, and the step options the calibration kept
    assert summary["load"]["cores"] >= 1 and summary["load"]["load_average"] >= 0
    assert 0 < summary["load"]["cpu_share"] <= 1.5 and "load average" in text
    assert set(summary["step_options"]) == {"precision", "channels_last", "compile"}
    precision = summary["step_options"]["precision"]
    assert precision == raw["train"]["precision"]
    assert precision in (("fp32", "bf16") if native_bf16() else ("fp32",))  # bf16 only where native
    line = next(x for x in text.splitlines() if x.strip().startswith("precision:"))
    assert "the fastest step that trains as well" in line or "not tried" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "soon"], "--budget soon: expected a duration such as 30m"),
        (["--budget", "-5m"], "--budget -5m: must be positive"),
        (
            ["--workflow", "xray"],
            "--workflow xray: expected one of auto, isic, ct, mammo, table, nnunet, decathlon",
        ),
        (["--gpu-memory", "lots"], "--gpu-memory lots: expected a size such as 24GB"),
        (["--device", "tpu"], "--device tpu: expected auto, cpu or cuda"),
    ],
)
def test_careless_arguments_are_refused_by_name(tmp_path, args, message):
    proc = _plan(str(tmp_path), *args)
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_budget_too_small_is_answered_with_a_budget_that_plans(tmp_path, monkeypatch):
    """The budget the refusal names plans without refusal, with the plan it said (in process, from
    fixed step times; the command line's own refusal, measured, is the next test)."""
    from medseg.errors import MedsegError
    from medseg.plan import calibrate
    from medseg.plan.study import plan_study

    monkeypatch.setattr(calibrate, "measure", fixed_step_times(0.05 / 2560, fixed=0.02))
    data = make_dataset(tmp_path / "data", n_cases=10, height=48, width=64)
    with pytest.raises(MedsegError) as refused:
        plan_study(data, "isic", tmp_path / "p.yaml", device="cpu", budget=5.0)
    found = re.search(
        r"--budget 5s: even the smallest plan \(UNet, scale ([\d.]+)\) trains fewer than 48 epochs per "
        r"fold in it; --budget (\d+)m would give it: UNet \(16 base features\) at scale ([\d.]+), "
        r"patch \[\d+, \d+\], batch \d+, (\d+) epochs",
        str(refused.value),
    )
    assert found, str(refused.value)
    minutes, epochs = int(found.group(2)), int(found.group(4))
    assert found.group(1) == found.group(3) and epochs >= B.MIN_EPOCHS
    summary = plan_study(data, "isic", tmp_path / "q.yaml", device="cpu", budget=minutes * 60.0)
    assert summary["epochs"] >= B.MIN_EPOCHS and summary["expected_seconds"] <= minutes * 60 * B.MARGIN + 1


@pytest.mark.slow  # seven candidates measured in fresh processes (a minute on 2 cores): `make test-slow`
def test_a_budget_too_small_is_refused_with_the_reason(tmp_path):
    data = make_dataset(tmp_path / "data", n_cases=10, height=48, width=64)
    proc = _plan(str(data), "--device", "cpu", "--budget", "5s", "--out", str(tmp_path / "p.yaml"))
    assert proc.returncode == 1 and "--budget 5s: even the smallest plan" in proc.stderr
    # answered with the smallest budget that fits and the plan it would give
    found = re.search(
        r"--budget (\d+)m would give it: UNet \(16 base features\) at scale [\d.]+, patch \[\d+, \d+\], "
        r"batch \d+, (\d+) epochs",
        proc.stderr,
    )
    assert found, proc.stderr
    assert int(found.group(1)) >= 1 and int(found.group(2)) >= 40
    assert "Traceback" not in proc.stderr
