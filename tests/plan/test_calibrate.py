"""Calibration: step times on a busy machine, peak memory per candidate, the step options kept."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from medseg.plan import calibrate
from medseg.plan.calibrate import Measured, measure
from medseg.plan.step_choice import LOSS_TOLERANCE, ROUNDS, choose_options, option_reasons
from medseg.runtime import cpu_cores
from medseg.train.side_by_side import OptionRun, SideBySide
from medseg.train.step_options import StepOptions
from tests.conftest import tiny_config

SMALL = {"name": "UNet", "args": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}}
LARGE = {"name": "UNet", "args": {"channels": [32, 64, 128, 256], "strides": [2, 2, 2], "num_res_units": 2}}


def study(root: Path, out: Path, model: dict[str, Any], size: list[int]) -> tuple[Any, list[dict[str, Any]]]:
    """A bound CPU configuration of ``model`` at ``size`` on ``root`` and its cases."""
    from medseg.data.datalist import build_datalist

    cfg = tiny_config(
        root, out, model=model, transforms={"spatial_size": size}, train={"batch_size": 4, "device": "cpu"}
    )
    cases, _ = build_datalist(cfg.data, cfg.transforms.spatial_dims, cfg.image_channels)
    return cfg, cases


@contextmanager
def busy_cores(n: int) -> Iterator[None]:
    """``n`` processes spinning on a core each, stopped by their process ids."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_busy_cpu_is_measured_within_15_percent_of_idle_or_warned(
    synthetic_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg, cases = study(synthetic_root, tmp_path, SMALL, [48, 64])
    idle = measure(cfg, cases)
    assert len(idle.step_rounds) == ROUNDS and idle.seconds_per_step > 0
    assert idle.seconds_per_step == pytest.approx(sorted(idle.step_rounds)[ROUNDS // 2], abs=1e-4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medseg.plan.calibrate"), busy_cores(cpu_cores()):
        loaded = measure(cfg, cases)
    warned = [r.message for r in caplog.records if "other jobs are running" in r.message]
    off = loaded.seconds_per_step / idle.seconds_per_step - 1
    assert warned or abs(off) <= 0.15, f"{off:+.0%} from the idle measurement and no warning"
    assert loaded.cores == cpu_cores() and loaded.load >= 0
    assert loaded.cpu_share < idle.cpu_share  # the competing processes took their share
    if warned:
        assert loaded.busy and f"{loaded.cores} cores" in warned[0]
        assert "busy machine" in calibrate.load_note(loaded)


def test_peak_memory_is_measured_for_each_candidate_and_grows_with_the_network(
    synthetic_root: Path, tmp_path: Path
) -> None:
    small, cases = study(synthetic_root, tmp_path, SMALL, [96, 128])
    large, _ = study(synthetic_root, tmp_path, LARGE, [96, 128])
    # each is measured in a fresh process of its own: the first two side by side (each process's
    # own high-water mark, so neither counts the other's), the third after the larger one
    with ThreadPoolExecutor(2) as pool:
        measuring = [pool.submit(measure, cfg, cases) for cfg in (small, large)]
        first, bigger = (m.result().peak_bytes for m in measuring)
    again = measure(small, cases).peak_bytes  # after a larger one: nothing of it is counted
    assert bigger > 2 * first > 0
    assert bigger > 2 * again
    assert again == pytest.approx(first, rel=0.3)


def test_calibration_tries_the_step_options_and_keeps_one_that_trains_as_well(
    synthetic_root: Path, tmp_path: Path
) -> None:
    """Two full batches per epoch (8 cases of batch 4): no last, smaller batch for the compiled
    network to compile a second time for (it compiles for static shapes)."""
    cfg, cases = study(synthetic_root, tmp_path, SMALL, [48, 64])
    m = measure(cfg, cases, steps=2, try_options=True, study_steps=10**6)  # long enough to try compile
    names = [t.name for t in m.trials]
    assert names[:2] == ["fp32", "channels-last"] and names[-1].endswith("compile")
    kept = [t for t in m.trials if t.verdict == "kept"]
    assert len(kept) == 1 and set(m.options) == {"precision", "channels_last", "compile"}
    assert kept[0].name == StepOptions(None, m.options["channels_last"], m.options["compile"]).name
    assert abs(kept[0].loss - m.trials[0].loss) <= LOSS_TOLERANCE * m.trials[0].loss
    assert m.trials[-1].compile_seconds > 0
    reasons = option_reasons(m.trials)
    assert "fp32 " in reasons["train.precision"] and "kept" in reasons["train.precision"]


def test_side_by_side_options_start_alike_and_draw_the_same_batches(
    synthetic_root: Path, tmp_path: Path
) -> None:
    from medseg.train.loaders import make_loaders

    cfg, cases = study(synthetic_root, tmp_path, SMALL, [48, 64])
    loader, _ = make_loaders(cfg, cases[:8], [], seed=0)
    runs = SideBySide(cfg, torch.device("cpu"), loader)
    a, b = runs.add(StepOptions()), runs.add(StepOptions())
    runs.rounds([a, b], 2)
    assert a.losses == b.losses and len(a.losses) == 3 and len(set(a.losses)) == 3
    assert len(a.seconds) == 2 and all(0 < s <= 1.5 for s in a.shares)


class ScriptedRuns:
    """SideBySide's interface with scripted figures: per option name, seconds per step, the loss
    after the calibration epochs and the first epoch's seconds."""

    steps = 4

    def __init__(self, script: dict[str, tuple[float, float, float]]) -> None:
        self.script = script

    def add(self, options: StepOptions) -> OptionRun:
        seconds, loss, first = self.script[options.name]
        return OptionRun(options, None, None, {}, first_seconds=first, losses=[loss])  # type: ignore[arg-type]

    def rounds(self, runs: list[OptionRun], n: int) -> None:
        for run in runs:
            seconds, loss, _ = self.script[run.options.name]
            run.seconds += [seconds] * n
            run.losses += [loss] * n


def choose(
    script: dict[str, tuple[float, float, float]], study_steps: int = 1000
) -> tuple[str, dict[str, str]]:
    runs = ScriptedRuns(script)
    kept, trials, _ = choose_options(runs, runs.add(StepOptions()), study_steps)  # type: ignore[arg-type]
    return kept.options.name, {t.name: t.verdict for t in trials}


def test_the_fastest_option_within_the_loss_tolerance_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("medseg.runtime.native_bf16", lambda: False)
    off = 1 + 2 * LOSS_TOLERANCE
    kept, verdicts = choose(
        {"fp32": (1.0, 0.5, 4), "channels-last": (0.5, 0.5 * off, 2), "compile": (1.2, 0.5, 60)}
    )
    assert kept == "fp32"
    assert "beyond 2%" in verdicts["channels-last"] and verdicts["compile"] == "slower"
    kept, verdicts = choose(
        {"fp32": (1.0, 0.5, 4), "channels-last": (0.8, 0.501, 4), "channels-last+compile": (0.6, 0.5, 60)}
    )
    assert kept == "channels-last+compile" and verdicts["fp32"] == "slower"
    assert verdicts["channels-last"] == "slower"
    # compiling for 400 s to save 0.2 s on each of 1000 steps does not pay
    kept, verdicts = choose(
        {"fp32": (1.0, 0.5, 4), "channels-last": (0.8, 0.5, 4), "channels-last+compile": (0.6, 0.5, 402.4)}
    )
    assert kept == "channels-last"
    assert "less than its 400 s of compiling" in verdicts["channels-last+compile"]
    # 30 steps of 0.8 s could not repay even a short compilation: not tried
    kept, verdicts = choose({"fp32": (1.0, 0.5, 4), "channels-last": (0.8, 0.5, 4)}, study_steps=30)
    assert kept == "channels-last" and list(verdicts) == ["fp32", "channels-last"]


def test_bf16_is_tried_where_the_cpu_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("medseg.runtime.native_bf16", lambda: True)
    script = {
        "fp32": (1.0, 0.5, 4),
        "channels-last": (1.1, 0.5, 4),
        "bf16": (0.5, 0.502, 2),
        "bf16+channels-last": (0.4, 0.9, 2),
        "bf16+compile": (0.45, 0.5, 30),
    }
    kept, verdicts = choose(script)
    assert kept == "bf16+compile" and "beyond" in verdicts["bf16+channels-last"]
    assert list(verdicts) == ["fp32", "channels-last", "bf16", "bf16+channels-last", "bf16+compile"]


def test_measured_keeps_the_fields_the_planner_reads() -> None:
    m = Measured(0.5, 0.2, 0.1, 2**20)
    assert (m.seconds_per_step, m.seconds_per_val_case, m.seconds_per_load, m.peak_bytes) == (
        0.5,
        0.2,
        0.1,
        2**20,
    )
    assert not m.busy and m.options == {} and m.trials == ()
    assert Measured(0.5, 0.2, 0.1, 0, load=3.1, cores=2, cpu_share=0.45).busy
