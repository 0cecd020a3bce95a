"""Which training step options a calibration keeps: the fastest that trains as well as the
configured ones, compile only where it repays its compilation.

The options' runs come from :class:`medseg.train.side_by_side.SideBySide`: each trained from the
same initial weights on the same batches, timed in alternated epochs. An option trains as well
when its mean training loss in the last calibration epoch (the same epoch for every option) is
within ``LOSS_TOLERANCE`` of the configured options'.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from medseg.train.side_by_side import OptionRun, SideBySide
    from medseg.train.step_options import StepOptions

ROUNDS = 5  # timed epochs per option; their median is the step time
# An option trains as well as float32 when its training loss after the calibration steps is within
# 2% of float32's. benchmarks/bench_train_step_options.py (isic.yaml on PH2, 5 steps, RESULTS.md):
# every option (bf16, channels-last, compile) stays within 0.03%, while float32 itself from other
# initial weights lands 21.5% away, so 2% keeps any option that trains like float32 and rejects one
# that trains measurably worse.
LOSS_TOLERANCE = 0.02
# compile is tried only where a compiled step saving MAX_COMPILE_GAIN of a step (bench_train_step_options:
# x1.70 median, 41% saved, on a busy 2-core CPU) would repay over the smallest study a compile of
# MIN_COMPILE_SECONDS (the bench: 35-210 s for isic.yaml's UNet from an empty cache)
MAX_COMPILE_GAIN = 0.5
MIN_COMPILE_SECONDS = 20.0


@dataclass(frozen=True)
class Trial:
    """One step option tried by the calibration.

    Attributes:
        name: e.g. ``fp32``, ``channels-last``, ``channels-last+compile``.
        seconds_per_step: the median of its timed rounds.
        loss: its mean training loss in the last calibration epoch.
        compile_seconds: the compilation in its first epoch (0 without compile).
        verdict: ``kept``, or why not.
    """

    name: str
    seconds_per_step: float
    loss: float
    compile_seconds: float = 0.0
    verdict: str = ""


def choose_options(
    runs: SideBySide, ref: OptionRun, study_steps: int
) -> tuple[OptionRun, tuple[Trial, ...], list[str]]:
    """The fastest step options that train as well as ``ref`` (the configured ones).

    First the memory formats, and bf16 where the CPU has it natively, alternate with ``ref``;
    then the fastest that trains as well alternates with its compiled self, kept when the steps it
    saves over ``study_steps`` repay the compilation.

    Args:
        runs: the options' shared loader and initial weights.
        ref: the configured options, trained one first epoch.
        study_steps: the training steps of the smallest study the planner accepts.

    Returns:
        The run kept, every trial with its verdict, and lines to log.
    """
    base, notes = ref.options, list[str]()
    stage = [ref] + [r for v in _variants(base, notes) if (r := _add(runs, v, notes)) is not None]
    runs.rounds(stage, ROUNDS)
    verdicts = {r.options.name: _verdict(r, ref) for r in stage}
    if ref.failed:
        return ref, (), notes
    best = min((r for r in stage if not verdicts[r.options.name]), key=lambda r: r.median)
    compiled = None
    if base.compile or study_steps * best.median * MAX_COMPILE_GAIN < MIN_COMPILE_SECONDS:
        notes.append(f"compile not tried: {study_steps} steps of {best.median:.3f} s cannot repay it")
    else:
        compiled = _add(runs, replace(best.options, compile=True), notes)
    if compiled is not None:
        runs.rounds([best, compiled], ROUNDS)
        stage.append(compiled)
        why = _verdict(compiled, ref) or _payback(compiled, best, runs, study_steps)
        verdicts[compiled.options.name] = why
        best = best if why else compiled
    verdicts[best.options.name] = "kept"
    return best, tuple(_trial(r, runs, verdicts[r.options.name] or "slower") for r in stage), notes


def _variants(base: StepOptions, notes: list[str]) -> list[StepOptions]:
    """The options tried beside ``base`` before compilation: the other memory format, and bf16 in
    both where the CPU has it natively."""
    from medseg.runtime import native_bf16

    variants = [replace(base, channels_last=not base.channels_last)]
    if native_bf16():
        variants += [replace(base, dtype=torch.bfloat16, channels_last=c) for c in (False, True)]
    else:
        notes.append(
            "bf16 not tried: the CPU has no native bf16 (avx512_bf16, amx_bf16), and emulated it is "
            "several times slower than float32"
        )
    return [v for v in variants if v.name != base.name]


def _add(runs: SideBySide, options: StepOptions, notes: list[str]) -> OptionRun | None:
    """``runs.add(options)``, or None (noted) when that option cannot train here."""
    try:
        return runs.add(options)
    except Exception as err:  # an optional trial: a compiler or kernel that fails here rules it out
        notes.append(f"{options.name} not usable here: {type(err).__name__}: {str(err).splitlines()[0]}")
        return None


def _verdict(run: OptionRun, ref: OptionRun) -> str:
    """Empty when ``run`` trains as well as ``ref``: its loss after the same epochs within
    ``LOSS_TOLERANCE``; else why not."""
    if run.failed:
        return run.failed
    mine, theirs = run.losses[ROUNDS], ref.losses[ROUNDS]
    off = abs(mine - theirs) / max(abs(theirs), 1e-12)
    if not math.isfinite(mine) or off > LOSS_TOLERANCE:
        return f"loss {mine:.4f} against {theirs:.4f} after {ROUNDS + 1} epochs, beyond {LOSS_TOLERANCE:.0%}"
    return ""


def _payback(compiled: OptionRun, plain: OptionRun, runs: SideBySide, study_steps: int) -> str:
    """Empty when the compiled step, over ``study_steps``, saves more than its compilation took."""
    cost = compile_seconds(compiled, runs)
    saved = (median(plain.seconds[-ROUNDS:]) - compiled.median) * study_steps
    if saved <= 0:
        return "slower"
    if saved > cost:
        return ""
    return f"saves {saved:.0f} s over {study_steps} steps, less than its {cost:.0f} s of compiling"


def compile_seconds(run: OptionRun, runs: SideBySide) -> float:
    """The first epoch's seconds beyond a timed epoch's: the compilation."""
    return max(0.0, run.first_seconds - run.median * runs.steps) if run.options.compile else 0.0


def _trial(run: OptionRun, runs: SideBySide, verdict: str) -> Trial:
    loss = run.losses[ROUNDS] if len(run.losses) > ROUNDS else math.nan
    compiling = round(compile_seconds(run, runs), 1)
    return Trial(run.options.name, round(run.median, 4), round(loss, 5), compiling, verdict)


def median(values: list[float]) -> float:
    """The median, NaN of nothing."""
    return float(statistics.median(values)) if values else math.nan


def option_reasons(trials: tuple[Trial, ...]) -> dict[str, str]:
    """Why the plan's step options (``train.precision``, ``channels_last``, ``compile``) are set
    as they are, from the calibration's trials."""
    tried = ", ".join(
        f"{t.name} {t.seconds_per_step:.3f} s/step"
        + (f" after {t.compile_seconds:.0f} s of compiling" if t.compile_seconds else "")
        + f" ({t.verdict})"
        for t in trials
    )
    bf16 = "" if any("bf16" in t.name for t in trials) else "; bf16 not tried: the CPU has no native bf16"
    why = f"the fastest step that trains as well (loss within {LOSS_TOLERANCE:.0%} after calibration)"
    return {
        "train.precision": f"{why}: {tried}{bf16}",
        "train.channels_last": "measured with train.precision",
        "train.compile": "measured with train.precision",
    }
