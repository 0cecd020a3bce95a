"""What running a study as Slurm jobs costs: the 2-fold demo study through `--executor slurm --wait`
against the same study in one process.

A single-node Slurm is started for the run (as the tests start it: root and the Debian packages
`slurmctld slurmd slurm-client munge` needed; otherwise the benchmark says why and stops). The
baseline is `medseg run pipelines/demo.yaml --set split.n_folds=2` in one process, the demo's own
settings otherwise. The same study then runs through Slurm:

- `executor.cpus` = every core: the folds one after the other, each with the baseline's threads,
  so the difference is the executor's own cost (job starts, three Python processes importing torch
  and MLflow and reading the data instead of one, the report as a job of its own, following);
- `executor.cpus` = 1: both folds at once, one core each.

    python benchmarks/bench_slurm.py [--rounds 1]

Prints each wall time and its ratio to the baseline; rounds alternate baseline and Slurm runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _study(tmp: Path, name: str) -> list[str]:
    return [
        sys.executable, "-m", "medseg", "run", str(ROOT / "pipelines" / "demo.yaml"),
        "--set", f"output_dir={tmp / name}",
        "--set", f"data.root={tmp / 'data'}",
        "--set", "split.n_folds=2",
    ]  # fmt: skip


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def _fold_seconds(run: Path) -> str:
    timing = json.loads((run / "timing.json").read_text())
    folds = [f"{k.split('_')[1]}: {v:.0f} s" for k, v in sorted(timing.items()) if k.startswith("fold_")]
    return "folds " + ", ".join(folds)


Times = dict[str, list[float]]


def _round(tmp: Path, env: dict[str, str], r: int, layouts: dict[str, int], times: Times) -> None:
    """One baseline run, then the study through Slurm in each layout."""
    times["one process"].append(_timed(_study(tmp, f"one{r}"), env, tmp))
    print(f"round {r + 1}: one process {times['one process'][-1]:.1f} s ({_fold_seconds(tmp / f'one{r}')})")
    for label, cpus in layouts.items():
        run = f"slurm{cpus}-{r}"
        cmd = [*_study(tmp, run), "--set", f"executor.cpus={cpus}", "--set", "executor.poll_seconds=1"]
        times[label].append(_timed([*cmd, "--executor", "slurm", "--wait"], env, tmp))
        print(f"round {r + 1}: {label} {times[label][-1]:.1f} s ({_fold_seconds(tmp / run)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from tests.cluster.single_node import single_node_slurm, unavailable

    reason = unavailable()
    if reason is not None:
        print(f"bench_slurm: skipped: {reason}")
        return
    cores = len(os.sched_getaffinity(0))
    layouts = {f"slurm, cpus={cores} (folds in turn)": cores, "slurm, cpus=1 (folds at once)": 1}
    times: Times = {"one process": [], **{k: [] for k in layouts}}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as name, single_node_slurm() as slurm:
        tmp = Path(name)
        _timed([*_study(tmp, "warm"), "--set", "train.epochs=1"], slurm.env, tmp)  # makes the data set
        for r in range(args.rounds):
            _round(tmp, slurm.env, r, layouts, times)
    base = statistics.median(times["one process"])
    print(f"\n2-fold demo study, {cores} cores, median of {args.rounds} round(s); baseline: one process")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:34s} {median:7.1f} s   x{median / base:.2f}   ({median - base:+.1f} s)")


if __name__ == "__main__":
    main()
