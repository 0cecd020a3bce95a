"""Measure a candidate plan on the device: training steps, validation cases, peak memory, the
machine's load, and the fastest training step options that train as well as the configured ones.

Each candidate is measured in a fresh Python process, so nothing an earlier candidate allocated
is counted or hides this one's memory. There the study's own loaders (reading, preprocessing,
augmentation), network, loss and optimiser run a warm-up epoch, over which peak memory is
measured: all that CUDA's allocator held at its peak on a GPU (weights included, as the device must
hold them), and on a CPU the rise of the process's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) over its resident set before the epoch. Then ``ROUNDS`` timed epochs of
``steps`` steps each; seconds per step is their median.

On a CPU, with ``try_options``, the step options of :mod:`medseg.train.step_options` are tried
(channels-last; bf16 autocast where the CPU has bf16 natively; then torch.compile of the best of
those). Every option trains its own network from the same initial weights on the same batches (the
random states of augmentation and shuffling restored), its rounds alternating with the others' so
that a slow spell of a shared machine falls on all. An option trains as well when its training
loss in the last round is within ``LOSS_TOLERANCE`` of the configured options'; the fastest that
does is kept, compile only when the steps it saves over the smallest study the planner accepts
repay its compile time, which is then spread over those steps in ``seconds_per_step``.

The 1-minute load average and the cores are recorded beside each measurement, and the share of
its cores the process got while timed steps ran: under ``BUSY_SHARE`` other jobs were running, the
step times are those of a busy machine, and a warning says so.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.plan.budget import shown
from medseg.plan.step_choice import ROUNDS, Trial, choose_options, compile_seconds, median

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_OPTION_GAIN = 2.0  # no step option is expected to do more than halve a CPU step
BUSY_SHARE = 0.8  # idle: 0.95-0.99 of the cores; one competing busy process on 2 cores: 0.62-0.65


@dataclass(frozen=True)
class Measured:
    """What one candidate costs on the device.

    Attributes:
        seconds_per_step: one training step (batch loaded, augmented, forward, backward, update)
            with the options kept, compile time included (see the module's note).
        seconds_per_val_case: one whole validation image or volume through the sliding window.
        seconds_per_load: reading and preprocessing one case into the cache.
        peak_bytes: memory training takes at its peak (see the module's note).
        load: the 1-minute load average as the measurement began.
        cores: the CPU cores this process may use.
        cpu_share: the share of ``cores`` the measuring process got while timed steps ran (CPU).
        step_rounds: seconds per step of each timed round of the options kept.
        options: the ``train`` settings of the options kept (precision, channels_last, compile).
        trials: every option tried, with its verdict.
    """

    seconds_per_step: float
    seconds_per_val_case: float
    seconds_per_load: float
    peak_bytes: int
    load: float = 0.0
    cores: int = 1
    cpu_share: float = 1.0
    step_rounds: tuple[float, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    trials: tuple[Trial, ...] = ()

    @property
    def busy(self) -> bool:
        """Whether other jobs took a noticeable share of the cores while steps were timed."""
        return self.cpu_share < BUSY_SHARE


def measure(
    cfg: PipelineConfig,
    cases: list[Any],
    steps: int = 3,
    try_options: bool = False,
    study_steps: int | None = None,
    budget: float | None = None,
) -> Measured:
    """Measure ``cfg`` in a fresh process: warm-up epoch, ``ROUNDS`` timed epochs of ``steps``
    steps, two validation cases; with ``try_options`` (on a CPU) the step options too.

    Args:
        cfg: the candidate plan, bound; its ``train`` options are the ones measured, and the
            reference for the others.
        cases: usable cases (as ingest lists them); a few are used.
        steps: training steps per timed epoch.
        try_options: try the other step options and keep the fastest that trains as well.
        study_steps: the training steps a compilation must repay; default: those of the smallest
            study the planner accepts on ``cases`` (every fold ``MIN_EPOCHS`` epochs).
        budget: the study's seconds: options are not tried where even twice as fast a step
            (``MAX_OPTION_GAIN``) could not train ``study_steps`` in it.

    Returns:
        The measured costs, the load, and the options kept.

    Raises:
        MedsegError: the device runs out of memory (named, with the batch and patch), or the
            measuring process ends abruptly.
    """
    from medseg.runtime import cpu_cores

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    measured, notes = _in_fresh_process((cfg, cases, steps, try_options, study_steps, budget))
    measured = _with_load(measured, load, cpu_cores())
    for note in notes:
        log.info("calibration: %s", note)
    _log_measured(measured)
    return measured


def _in_fresh_process(args: tuple[Any, ...]) -> tuple[Measured, list[str]]:
    """:func:`_measure_here` (``args``) in a new Python process, the arguments and the result
    passed through files; a plain ``python -c``, so no caller's main module is imported again."""
    import pickle
    import subprocess
    import sys
    import tempfile

    import medseg

    with tempfile.TemporaryDirectory(prefix="medseg-calibration-") as tmp:
        given, result = Path(tmp) / "args.pkl", Path(tmp) / "result.pkl"
        given.write_bytes(pickle.dumps(args))
        env = dict(os.environ)  # the same medseg as this process's
        package_root = str(Path(medseg.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        code = "import sys; from medseg.plan.calibrate import _child; _child(sys.argv[1], sys.argv[2])"
        proc = subprocess.run(
            [sys.executable, "-c", code, str(given), str(result)], env=env, stderr=subprocess.PIPE, text=True
        )
        if proc.returncode != 0 or not result.is_file():
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            why = "killed, out of memory?" if proc.returncode < 0 else last
            raise MedsegError(f"calibration: the measuring process failed ({why})")
        outcome = pickle.loads(result.read_bytes())
    if isinstance(outcome, MedsegError):
        raise outcome
    measured: tuple[Measured, list[str]] = outcome
    return measured


def _child(given: str, result: str) -> None:
    """The fresh process's side of :func:`_in_fresh_process`: a MedsegError is passed back."""
    import pickle

    args = pickle.loads(Path(given).read_bytes())
    try:
        outcome: Any = _measure_here(*args)
    except MedsegError as err:
        outcome = err
    Path(result).write_bytes(pickle.dumps(outcome))


def _with_load(m: Measured, load: float, cores: int) -> Measured:
    return replace(m, load=round(load, 2), cores=cores)


def _log_measured(m: Measured) -> None:
    log.info(
        "calibration: %.3f s/step (%s; rounds %s), %.3f s/validation case, %.1f MB peak, "
        "load average %.2f on %d cores (the steps got %.0f%% of them)",
        m.seconds_per_step,
        "+".join(f"{k}={v}" for k, v in m.options.items()) or "as configured",
        ", ".join(f"{s:.3f}" for s in m.step_rounds),
        m.seconds_per_val_case,
        m.peak_bytes / 2**20,
        m.load,
        m.cores,
        100 * m.cpu_share,
    )
    for t in m.trials:
        log.info(
            "calibration: %s %.3f s/step, loss %.4f%s: %s",
            t.name,
            t.seconds_per_step,
            t.loss,
            f", {t.compile_seconds:.0f} s compiling" if t.compile_seconds else "",
            t.verdict,
        )
    if m.busy:
        log.warning(
            "calibration: other jobs are running (load average %.2f on %d cores; the measurement "
            "got %.0f%% of the cores): the step times are those of a machine this busy, often "
            "several times an idle one's; plan on an idle machine for a plan of the idle machine",
            m.load,
            m.cores,
            100 * m.cpu_share,
        )


def load_note(m: Measured) -> str:
    """The machine's load beside a measurement, for the plan's header."""
    note = f"load average {m.load:.2f} on {m.cores} cores"
    if m.busy:
        note += (
            f"; other jobs were running and the steps got {m.cpu_share:.0%} of the cores, so these "
            "are a busy machine's times: plan again when it is idle for an idle machine's plan"
        )
    return note


def _measure_here(
    cfg: PipelineConfig,
    cases: list[Any],
    steps: int,
    try_options: bool,
    study_steps: int | None,
    budget: float | None,
) -> tuple[Measured, list[str]]:
    """:func:`measure`'s work, in the fresh process: the measurement and lines to log."""
    from medseg.runtime import pick_device
    from medseg.train.epoch import validation_dice
    from medseg.train.loaders import make_loaders
    from medseg.train.side_by_side import SideBySide
    from medseg.train.step_options import step_options

    device = pick_device(cfg.train.device)
    study_steps = study_steps or _study_steps(cfg, len(cases))
    n_fit = max(1, min(len(cases) - 2, cfg.train.batch_size * steps))  # a step takes batch_size cases
    fit, val = cases[:n_fit], cases[n_fit : n_fit + 2]
    t0 = time.perf_counter()
    train_loader, val_loader = make_loaders(cfg, fit, val, seed=0, device=device)
    load = (time.perf_counter() - t0) / (len(fit) + len(val))
    runs = SideBySide(cfg, device, train_loader)
    try:
        peak, ref = _peak(device, lambda: runs.add(step_options(cfg.train, device)))
        runs.rounds([ref], 1)  # a step without the first epoch's warm-up, for the guard below
        step = ref.seconds[0] if ref.seconds else ref.first_seconds / runs.steps
        beyond = _beyond_budget(step, study_steps, budget)
        if try_options and device.type == "cpu" and not beyond:
            kept, trials, notes = choose_options(runs, ref, study_steps)
        else:
            runs.rounds([ref], ROUNDS - 1)  # the guard's epoch was the first
            kept, trials, notes = ref, (), [beyond] if try_options and beyond else []
        if ref.failed:
            raise MedsegError(f"calibration: {ref.failed}")
        t0 = time.perf_counter()
        if val_loader is not None:
            model, ctx = kept.state.model, kept.ctx
            validation_dice(model, val_loader, ctx, cfg.data.num_classes, cfg.data.ignore_value)
        per_val = (time.perf_counter() - t0) / max(1, len(val))
    except torch.OutOfMemoryError:
        raise MedsegError(
            f"calibration: batch {cfg.train.batch_size} of "
            f"{cfg.transforms.patch_size or cfg.transforms.spatial_size} does not fit the {device} "
            "memory; give a smaller --gpu-memory"
        ) from None
    compiling = compile_seconds(kept, runs) / study_steps
    measured = Measured(
        seconds_per_step=kept.median + compiling,
        seconds_per_val_case=per_val,
        seconds_per_load=load,
        peak_bytes=max(0, int(peak)),
        cpu_share=median(kept.shares) if device.type == "cpu" else math.nan,
        step_rounds=tuple(round(s, 4) for s in kept.seconds),
        options=kept.options.settings(),
        trials=trials,
    )
    return measured, notes


def _beyond_budget(step: float, study_steps: int, budget: float | None) -> str:
    """Why no step option is worth trying: even ``MAX_OPTION_GAIN`` times faster, ``study_steps``
    of ``step`` seconds (a timed epoch's after the first) exceed the budget; else empty."""
    if budget is None or study_steps * step / MAX_OPTION_GAIN <= budget:
        return ""
    return (
        f"step options not tried: even {MAX_OPTION_GAIN:g} times faster, {study_steps} steps of about "
        f"{step:.2f} s exceed the {shown(budget)} budget"
    )


def _study_steps(cfg: PipelineConfig, n_cases: int) -> int:
    """Training steps of the smallest study the planner accepts: every fold at least
    ``MIN_EPOCHS`` epochs of ``train.batch_size`` cases per step (each giving
    ``transforms.patches_per_image`` patches in patch training); what a compilation must repay."""
    from medseg.plan import budget as B

    shares = B.Shares.of(n_cases, B.FOLDS, cfg.train.val_fraction)
    per_epoch = math.ceil(shares.fit / cfg.train.batch_size)
    return B.FOLDS * B.MIN_EPOCHS * per_epoch


def _peak(device: torch.device, warm_up: Callable[[], T]) -> tuple[float, T]:
    """Bytes that ``warm_up()`` takes at its peak (see the module's note), and what it returns."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result = warm_up()
        return float(torch.cuda.max_memory_allocated()), result
    before = _rss_peak_reset()
    result = warm_up()
    return (float(_status("VmHWM") - before) if before else 0.0), result


def _rss_peak_reset() -> int:
    """The process's resident memory now, after resetting its high-water mark (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmRSS")
    except OSError:
        return 0


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0
