"""The GPU check: every figure of the GPU path in one run, each part under a time cap of its own.

    python benchmarks/gpu/figures.py OUTDIR --data DIR [--device cuda|cpu] [--tiny] [--only PARTS]
        [--started EPOCH] [--limit SECONDS] [--work DIR]

benchmarks/gpu/run.sh calls it after installing the carried wheels. The parts, in this order:

- ``tests``: ``pytest -m cuda tests`` (AMP, the device loader, predict on the device, the planner's
  CUDA calibration and memory estimate; they skip without CUDA);
- ``train``: ``bench_train_throughput.py`` for isic.yaml on PH2 and ct.yaml on the CT cases with
  ``train.loader`` device and standard, AMP on and off, against the bare model step on tensors
  already on the device (goal: ratio at least 0.8);
- ``predict``: ``bench_predict.py`` against the bare MONAI loop (goal: throughput ratio at least
  0.5), and two ``--part`` processes at once;
- ``ph2_plan``, ``ph2_run``: ``medseg plan --device cuda --budget 4m`` on PH2, then ``medseg run``
  of that plan with tracking off (MLflow is not carried): wall time, cross-validated Dice against
  the 30-minute CPU plan's 0.9238.

Each part runs in a process group of its own, killed at its cap or at the run's limit (8 minutes
from ``--started``, the time run.sh began), whichever comes first, so one slow part cannot eat the
others' time. Prints one ``figure KEY: ...`` line per figure and writes ``figures.json`` (every key
present, null where its part did not finish), ``run.log`` (every part's output),
``cuda-tests.xml``, ``ph2-plan.yaml`` and ``ph2-summary.json`` into OUTDIR. ``--tiny`` shrinks every
part for a dry run on a CPU (``tests/benchmarks/test_gpu_dry_run.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CPU_PLAN_DICE = 0.9238  # medseg plan --device cpu --budget 30m on PH2, benchmarks/RESULTS.md
PREDICT_GOAL, TRAIN_GOAL = 0.5, 0.8
STUDIES, LOADERS, AMPS = ("isic", "ct"), ("device", "standard"), ("on", "off")
FIGURE_KEYS = (
    "cuda_tests",
    *(f"train.{s}.{loader}.amp_{a}" for s in STUDIES for loader in LOADERS for a in AMPS),
    "predict.throughput_ratio",
    "predict.monai_series_per_min",
    "predict.medseg_series_per_min",
    "predict.parts_series_per_min",
    "ph2.plan_seconds",
    "ph2.expected_seconds",
    "ph2.run_seconds",
    "ph2.dice",
)


@dataclass(frozen=True)
class Settings:
    """What one run measures with, on the GPU or (``tiny``) in a dry run."""

    caps: dict[str, float]  # seconds per part
    limit: float  # seconds for everything, install included
    train: tuple[str, ...]
    predict: tuple[str, ...]
    ph2_budget: str
    ph2_run: tuple[str, ...]  # --set values of medseg run besides output_dir and tracking


GPU = Settings(
    caps={"tests": 45, "train": 65, "predict": 70, "ph2_plan": 55, "ph2_run": 240},
    limit=480,
    train=("--steps", "16", "--rounds", "2"),
    predict=("--series", "8", "--rounds", "2"),
    ph2_budget="4m",
    ph2_run=(),
)
TINY = Settings(
    # generous: a dry run shares 2 CPU cores with other work; the caps only keep it from hanging
    caps={"tests": 180, "train": 480, "predict": 420, "ph2_plan": 300, "ph2_run": 360},
    limit=2400,
    train=("--steps", "2", "--rounds", "1", "--max-cases", "8"),
    predict=("--series", "2", "--rounds", "1"),
    ph2_budget="3m",
    ph2_run=("train.epochs=1",),
)


@dataclass
class Run:
    """One run's places, settings and results."""

    out: Path
    work: Path
    data: Path
    device: str
    settings: Settings
    deadline: float
    figures: dict[str, Any]
    lines: dict[str, str]
    parts: dict[str, dict[str, Any]]

    @property
    def log(self) -> Path:
        return self.out / "run.log"

    def figure(self, key: str, value: Any, line: str) -> None:
        assert key in FIGURE_KEYS, key
        self.figures[key], self.lines[key] = value, line
        print(f"figure {key}: {line}", flush=True)


def _run_part(run: Run, name: str, cmd: list[str], env: dict[str, str]) -> bool:
    """Run one part's command in its own process group under its cap; record how it ended."""
    cap = min(run.settings.caps[name], run.deadline - time.time())
    if cap < 10:
        run.parts[name] = {"status": "no time left", "seconds": 0.0, "cap": round(cap, 1)}
        print(f"part {name}: not run, {cap:.0f} s left of the run's limit", flush=True)
        return False
    print(f"part {name}: up to {cap:.0f} s", flush=True)
    t0 = time.monotonic()
    with open(run.log, "a") as log:
        log.write(f"\n== part {name} (cap {cap:.0f} s): {' '.join(cmd)}\n")
        log.flush()
        start = log.tell()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the part's whole process group, workers included
            proc.wait()
            code = None
    seconds = time.monotonic() - t0
    status = "ok" if code == 0 else "timed out" if code is None else f"failed (exit {code})"
    run.parts[name] = {"status": status, "seconds": round(seconds, 1), "cap": round(cap, 1)}
    tail = ""
    if code != 0:  # the end of the part's own output, read before this process writes more
        with open(run.log) as log:
            log.seek(start)
            tail = "".join(log.readlines()[-15:])
    print(f"part {name}: {status} in {seconds:.0f} s\n{tail}", end="" if tail else "\n", flush=True)
    return code == 0


def part_tests(run: Run, env: dict[str, str]) -> None:
    xml = run.out / "cuda-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests", "-q", "-rs", "-p", "no:cacheprovider"]
    cmd += ["--continue-on-collection-errors", f"--junitxml={xml}"]
    _run_part(run, "tests", cmd, env)
    if not xml.is_file():
        return
    root = ET.parse(xml).getroot()
    suite = root.find("testsuite") if root.tag == "testsuites" else root
    assert suite is not None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    value = {"passed": passed, "failed": counts["failures"], "errors": counts["errors"]}
    value["skipped"] = counts["skipped"]
    line = f"{passed} passed, {value['failed']} failed, {value['errors']} errors, {value['skipped']} skipped"
    run.figure("cuda_tests", value, f"{line} ({run.parts['tests']['seconds']:.0f} s)")


def part_train(run: Run, env: dict[str, str]) -> None:
    out = run.work / "train.json"
    cmd = [sys.executable, "benchmarks/bench_train_throughput.py", "--device", run.device]
    cmd += ["--studies", ",".join(STUDIES), "--loader", ",".join(LOADERS), "--amp", ",".join(AMPS)]
    cmd += ["--data", str(run.data), "--json", str(out), *run.settings.train]
    _run_part(run, "train", cmd, env)
    found = json.loads(out.read_text()) if out.is_file() else {}
    run.parts["train"]["details"] = found
    for study in STUDIES:
        for loader in LOADERS:
            for amp in AMPS:
                r = found.get(f"{study}/{loader}/amp_{amp}")
                if r is None:
                    continue
                met = "met" if r["ratio"] >= TRAIN_GOAL else "NOT met"
                run.figure(
                    f"train.{study}.{loader}.amp_{amp}",
                    r["ratio"],
                    f"x{r['ratio']:.2f} (medseg loader {r['medseg']:.1f} / bare step {r['bare']:.1f} "
                    f"samples/s, loader {r['loader']}, {r['workers']} worker(s), AMP "
                    f"{'on' if r['amp'] else 'off'}, batch {r['batch']}; goal >= {TRAIN_GOAL}: {met})",
                )


def part_predict(run: Run, env: dict[str, str]) -> None:
    out = run.work / "predict.json"
    cmd = [sys.executable, "benchmarks/bench_predict.py", "--device", run.device, "--no-memory"]
    cmd += ["--parts", "2", "--data", str(run.data), "--json", str(out), *run.settings.predict]
    _run_part(run, "predict", cmd, env)
    if not out.is_file():
        return
    r = json.loads(out.read_text())
    run.parts["predict"]["details"] = r
    met = "met" if r["throughput_ratio"] >= PREDICT_GOAL else "NOT met"
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in r["stage_seconds"].items())
    run.figure(
        "predict.throughput_ratio",
        r["throughput_ratio"],
        f"x{r['throughput_ratio']:.2f} of the bare MONAI loop's series per minute (rounds: "
        f"{', '.join(f'x{1 / x:.2f}' for x in r['round_ratios'])}; goal >= {PREDICT_GOAL}: {met})",
    )
    run.figure("predict.monai_series_per_min", r["monai_series_per_min"], f"{r['monai_series_per_min']:.1f}")
    run.figure(
        "predict.medseg_series_per_min",
        r["medseg_series_per_min"],
        f"{r['medseg_series_per_min']:.1f} ({r['workers']} worker process(es); per series {stages})",
    )
    if "parts_series_per_min" not in r:
        return
    run.figure(
        "predict.parts_series_per_min",
        r["parts_series_per_min"],
        f"{r['parts_series_per_min']:.1f} with --part 1/2 and 2/2 at once "
        f"(x{r['parts_series_per_min'] / r['medseg_series_per_min']:.2f} of one process)",
    )


def part_ph2(run: Run, env: dict[str, str]) -> None:
    plan = run.work / "ph2" / "plan" / "ph2-plan.yaml"
    data = run.data / "ph2-isic-layout"
    cmd = [sys.executable, "-m", "medseg", "plan", str(data), "--device", run.device]
    cmd += ["--budget", run.settings.ph2_budget, "--out", str(plan)]
    if not _run_part(run, "ph2_plan", cmd, env):
        return
    planned = json.loads((plan.parent / "ph2-plan.plan.json").read_text())
    shutil.copy(plan, run.out / "ph2-plan.yaml")
    run.parts["ph2_plan"]["details"] = planned
    seconds = run.parts["ph2_plan"]["seconds"]
    run.figure(
        "ph2.plan_seconds",
        seconds,
        f"{seconds:.0f} s: {planned['network']} ({planned['base_features']} base features), scale "
        f"{planned['scale']}, patch {planned['patch']}, batch {planned['batch_size']}, "
        f"{planned['epochs']} epochs, {planned['seconds_per_step']:.3f} s per step, "
        f"peak {planned['peak_bytes'] / 2**20:.0f} MB",
    )
    budget = _seconds(run.settings.ph2_budget)
    run.figure(
        "ph2.expected_seconds",
        planned["expected_seconds"],
        f"{planned['expected_seconds']:.0f} s of the {budget:.0f} s budget",
    )
    study = run.work / "ph2" / "run"
    cmd = [sys.executable, "-m", "medseg", "run", str(plan), "--set", f"output_dir={study}"]
    for value in ("tracking.enabled=false", *run.settings.ph2_run):
        cmd += ["--set", value]
    if not _run_part(run, "ph2_run", cmd, env):
        return
    _ph2_results(run, study, planned, budget)


def _ph2_results(run: Run, study: Path, planned: dict[str, Any], budget: float) -> None:
    summary = json.loads((study / "summary.json").read_text())
    shutil.copy(study / "summary.json", run.out / "ph2-summary.json")
    timing = json.loads((study / "timing.json").read_text())
    seconds = run.parts["ph2_run"]["seconds"]
    run.parts["ph2_run"]["details"] = {"timing": timing}
    met = "met" if seconds <= budget else "NOT met"
    run.figure(
        "ph2.run_seconds",
        seconds,
        f"{seconds:.0f} s (timing.json {timing['total_seconds']:.0f} s; plan expected "
        f"{planned['expected_seconds']:.0f} s; budget {budget:.0f} s: {met})",
    )
    dice = summary["fold_mean"]["mean"]["dice"]
    run.figure(
        "ph2.dice",
        {"mean": dice["mean"], "std": dice["std"]},
        f"{dice['mean']:.4f} ± {dice['std']:.4f} over the folds (30-minute CPU plan {CPU_PLAN_DICE}: "
        f"ratio {dice['mean'] / CPU_PLAN_DICE:.3f})",
    )


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def environment(device: str) -> dict[str, Any]:
    """The machine, the device and the versions the figures were measured with."""
    import importlib.metadata as md

    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "device": device,
    }
    for name in ("monai", "numpy", "pydicom", "nibabel", "pydantic", "highdicom", "typer", "scipy"):
        try:
            env[name] = md.version(name)
        except md.PackageNotFoundError:
            env[name] = None
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env |= {
            "gpu": torch.cuda.get_device_name(0),
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return env


PARTS: dict[str, Callable[[Run, dict[str, str]], None]] = {
    "tests": part_tests,
    "train": part_train,
    "predict": part_predict,
    "ph2": part_ph2,
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="holds ct/ and ph2-isic-layout/")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="every part shrunk, for a dry run")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--started", type=float, default=time.time(), help="when the run began (epoch)")
    parser.add_argument("--limit", type=float, help="seconds for everything (default 480; tiny 2400)")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder (printed)")
    args = parser.parse_args()
    if unknown := set(args.only.split(",")) - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; the parts: {', '.join(PARTS)}")
    return args


def main() -> int:
    args = _arguments()
    settings = TINY if args.tiny else GPU
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("figures.py: --device cuda, but torch sees no CUDA device; --device cpu for a dry run")
            return 1
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="medseg-gpu-work-"))
    deadline = args.started + (args.limit or settings.limit)
    figures: dict[str, Any] = dict.fromkeys(FIGURE_KEYS)
    run = Run(args.out, work, args.data.resolve(), args.device, settings, deadline, figures, {}, {})
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    machine = environment(args.device)
    print("environment: " + ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    try:
        for name in args.only.split(","):
            try:
                PARTS[name](run, env)
            except Exception as exc:  # a part's results unreadable: the next parts still run
                run.parts.setdefault(name, {})["error"] = repr(exc)
                print(f"part {name}: its results could not be read: {exc!r}", flush=True)
    finally:
        if args.keep_work:
            print(f"scratch folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result = {"environment": machine, "tiny": args.tiny, "figures": run.figures, "lines": run.lines}
    result |= {"parts": run.parts, "seconds": round(time.time() - args.started, 1)}
    (args.out / "figures.json").write_text(json.dumps(result, indent=1, default=str))
    missing = [k for k, v in run.figures.items() if v is None]
    print(
        f"figures.json: {len(FIGURE_KEYS) - len(missing)} of {len(FIGURE_KEYS)} figures in "
        f"{result['seconds']:.0f} s" + (f"; missing: {', '.join(missing)}" if missing else "")
    )
    return 0 if not missing else 2


if __name__ == "__main__":
    sys.exit(main())
