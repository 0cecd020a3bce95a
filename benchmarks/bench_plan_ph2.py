"""`medseg plan` on PH2 with a 30-minute CPU budget, then `medseg run` of the plan unchanged.

Prints the plan's expected and the run's real wall time against the budget, and the 5-fold mean
Dice against the named baseline: the hand-written `pipelines/isic.yaml` (0.9206 ± 0.0071 in 24.4 min,
recorded in RESULTS.md; pass --baseline-run DIR to read a fresh run's summary.json instead).
Targets: the whole study within the budget, Dice at least the baseline's and at least 0.935 (after
the post-processing the study adopts; the raw figure is printed beside it). Also printed: the review
threshold the study chose and what it catches and flags in cross-validation.

    python benchmarks/bench_plan_ph2.py              # about 30 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ph2-isic-layout"
BASELINE_DICE = 0.9206  # pipelines/isic.yaml, RESULTS.md 2026-11-22
TARGET_DICE = 0.935  # cross-validated, after the adopted post-processing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="30m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-plan-ph2")
    parser.add_argument("--baseline-run", type=Path, help="a finished isic.yaml run folder")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: PH2 not found at {DATA}")
        return 0
    medseg = [sys.executable, "-m", "medseg"]
    plan = args.out / "plan" / "ph2-plan.yaml"
    t0 = time.perf_counter()
    subprocess.run(
        [*medseg, "plan", str(DATA), "--device", args.device, "--budget", args.budget, "--out", str(plan)],
        check=True,
    )
    t1 = time.perf_counter()
    subprocess.run([*medseg, "run", str(plan), "--set", f"output_dir={args.out / 'run'}"], check=True)
    t2 = time.perf_counter()
    expected = json.loads((plan.parent / "ph2-plan.plan.json").read_text())["expected_seconds"]
    summary = json.loads((args.out / "run" / "summary.json").read_text())
    dice = summary["fold_mean"]["mean"]["dice"]
    baseline = BASELINE_DICE
    if args.baseline_run:
        baseline = json.loads((args.baseline_run / "summary.json").read_text())["fold_mean"]["mean"]["dice"][
            "mean"
        ]
    budget = float(args.budget[:-1]) * 60 if args.budget.endswith("m") else float(args.budget)
    print(
        f"plan {t1 - t0:.0f} s; run {t2 - t1:.0f} s (expected {expected:.0f} s); budget {budget:.0f} s: "
        f"ratio {(t2 - t1) / budget:.3f} ({'met' if t2 - t1 <= budget else 'MISSED'})"
    )
    print(
        f"mean Dice {dice['mean']:.4f} ± {dice['std']:.4f}; isic.yaml baseline {baseline:.4f}: ratio "
        f"{dice['mean'] / baseline:.4f} ({'met' if dice['mean'] >= baseline else 'MISSED'}); target "
        f"{TARGET_DICE} ({'met' if dice['mean'] >= TARGET_DICE else 'MISSED'})"
    )
    shown(summary)
    return 0


def shown(summary: dict[str, Any]) -> None:
    """The post-processing adopted with the raw Dice beside, and the review flag in cross-validation."""
    post, raw = summary.get("postprocessing") or {}, summary.get("raw")
    if raw is not None:
        before = raw["fold_mean"]["mean"]["dice"]
        print(
            f"post-processing {post.get('value')}: raw mean Dice {before['mean']:.4f} ± {before['std']:.4f}"
        )
    else:
        print(f"post-processing: none adopted ({post.get('reason', 'no postprocessing.json')})")
    review, score = summary.get("review") or {}, summary.get("uncertainty") or {}
    print(
        f"review threshold {review.get('threshold')} ({review.get('source')}): catches "
        f"{review.get('caught')} of "
        f"{review.get('n_low')} held-out cases below Dice {review.get('dice_below')} (catch rate "
        f"{review.get('catch_rate')}), flags {review.get('flagged')} of {review.get('n')} (flag rate "
        f"{review.get('flag_rate')}); AUROC {score.get('auroc')} ± {score.get('auroc_se')}, Spearman "
        f"{score.get('spearman')}"
    )


if __name__ == "__main__":
    sys.exit(main())
