"""Held-out scoring of one real CT case, stage by stage: medseg now against medseg before this change.

`medseg run pipelines/ct.yaml` predicts each fold's held-out case on its own grid and scores it
(`pipeline/fold.py:evaluate_fold`): read the case (the 20-slice JPEG 2000 series, 512x512, or the
122x101x30 NIfTI in ../shared/data/ct), sliding-window inference with the test-time flips of the
uncertainty score (four passes), the prediction written, Dice to NSD per class
(`evaluate/casewise.py:score_case`), and the overlay picture. The model is the pipeline's own 3D
UNet with seeded random weights, which scatter every class over the volume as a poor model does
(the case the time was reported for: a surface spanning the whole volume); its speed does not
depend on the weights.

Baseline, measured in the same process, alternating with medseg, on the same arrays: the
surface distances as computed before this change, scipy's distance transform of the whole cropped
box indexed at the edge voxels (the other stages are unchanged code and are timed once per round
for the share they take). Every metric must come out identical, bit for bit.

The distance-transform branch alone is also timed first, on a 512x512x20 box whose two edge sets
each hold 5% of the voxels (a poor prediction's scattered surface), against the same baseline,
alternating (``--branch-only`` runs just that part, without the data).

``--score-passes`` times instead the held-out prediction with the uncertainty score's flips tiling
the model grid (``infer.score_overlap: 0``, the default) against the baseline of those flips at the
prediction's own overlap (0.5 in pipelines/ct.yaml, as before that setting), alternating; the label
maps must come out identical.

    python benchmarks/bench_heldout.py [--rounds 3] [--data DIR] [--branch-only] [--score-passes]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from medseg.config.models import PipelineConfig
    from medseg.infer.heldout import HeldOutCase
    from medseg.io.case import Case
    from medseg.run_dir import FoldDir

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STATS = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 40, std: 300}}]"


def whole_box(edges_from: np.ndarray, edges_to: np.ndarray, spacing: Any) -> np.ndarray:
    """The baseline: the EDT branch of ``surface._directed`` before this change."""
    from scipy.ndimage import distance_transform_edt

    field = distance_transform_edt(~edges_to, sampling=list(spacing))
    return np.asarray(field[edges_from], dtype=np.float32)


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def setting(data: Path, out: Path) -> tuple[PipelineConfig, list[Case], nn.Module]:
    """The configuration of pipelines/ct.yaml on ``data``, its two real cases, a seeded network."""
    import torch

    from medseg.config.load import load_pipeline
    from medseg.pipeline.stages import ingest
    from medseg.registry import build_network

    overrides = [f"output_dir={out}", f"data.root={data / 'ct'}", STATS]
    cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml", overrides)
    cases, _ = ingest(cfg, out)
    torch.manual_seed(0)
    return cfg, cases, build_network(cfg.network).eval()


def same(rows: list[dict[str, Any]], other: list[dict[str, Any]]) -> bool:
    """Rows equal key by key, value by value (NaN equal to NaN)."""
    return len(rows) == len(other) and all(
        a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)
        for a, b in zip(rows, other, strict=True)
    )


def one_case(cfg: PipelineConfig, case: Case, model: nn.Module, fold: FoldDir) -> dict[str, Any]:
    """Every stage of one held-out case, as evaluate_fold runs them, each timed."""
    import torch

    from medseg.evaluate import surface
    from medseg.evaluate.casewise import score_case
    from medseg.infer.heldout import predict_heldout
    from medseg.report.overlays import write_overlays

    t_predict, (held,) = timed(lambda: list(predict_heldout(cfg, [model], [case], fold, torch.device("cpu"))))
    t_score, rows = timed(score_case, cfg, held.case_id, held.pred, held.ref, held.spacing)
    real = surface._edt_at
    surface._edt_at = whole_box
    try:
        t_base, base_rows = timed(score_case, cfg, held.case_id, held.pred, held.ref, held.spacing)
    finally:
        surface._edt_at = real
    if not same(rows, base_rows):
        raise SystemExit(f"{case.id}: the metrics differ from the baseline's: {rows} vs {base_rows}")
    t_overlay, _ = timed(write_overlays, cfg, [case], rows, fold.overlays, lambda _: held.path)
    return {"predict": t_predict, "score": t_score, "score_baseline": t_base, "overlay": t_overlay}


def branch(rounds: int) -> None:
    """The EDT branch of the surface distances alone: medseg's against the baseline, same arrays."""
    from medseg.evaluate.surface import _edt_at

    rng = np.random.default_rng(0)
    shape, spacing = (512, 512, 20), (0.9765625, 0.9765625, 2.0)
    edges_to, edges_from = rng.random(shape) < 0.05, rng.random(shape) < 0.05
    ratios: list[float] = []
    ours: list[float] = []
    base: list[float] = []
    for _ in range(rounds + 1):  # the first is a warm-up
        t_ours, d_ours = timed(_edt_at, edges_from, edges_to, spacing)
        t_base, d_base = timed(whole_box, edges_from, edges_to, spacing)
        if not np.array_equal(d_ours, d_base):
            raise SystemExit("the EDT branch's distances differ from the baseline's")
        ours, base, ratios = ours + [t_ours], base + [t_base], ratios + [t_ours / t_base]
    t_ours, t_base = statistics.median(ours[1:]), statistics.median(base[1:])
    print(
        f"EDT branch, 512x512x20 box, 5% edge voxels: {t_ours:.2f} s against the baseline's "
        f"{t_base:.2f} s (ratio {t_ours / t_base:.2f}, identical values); "
        f"rounds: {', '.join(format(r, '.2f') for r in ratios[1:])}",
        flush=True,
    )


def score_passes(
    cfg: PipelineConfig, cases: list[Case], model: nn.Module, fold: FoldDir, rounds: int
) -> None:
    """The held-out prediction with the score's flips tiling the grid (``infer.score_overlap: 0``)
    against the baseline, the same flips at the prediction's own overlap 0.5 (as before this
    setting), alternating; the label maps must be identical."""
    import torch

    from medseg.infer.heldout import predict_heldout
    from medseg.infer.sliding import model_grid, window_count

    variants = {
        k: cfg.model_copy(update={"infer": cfg.infer.model_copy(update={"score_overlap": k})})
        for k in (0.5, 0.0)
    }
    cpu = torch.device("cpu")
    for case in cases:
        times: dict[float, list[float]] = {0.5: [], 0.0: []}
        held: dict[float, HeldOutCase] = {}
        for i in range(rounds + 1):  # the first is a warm-up
            for k, c in variants.items():
                t, (held[k],) = timed(
                    lambda c=c, case=case: list(predict_heldout(c, [model], [case], fold, cpu))
                )
                times[k] += [t] if i else []
        if not np.array_equal(held[0.5].pred, held[0.0].pred):
            raise SystemExit(f"{case.id}: the prediction changed with the score's overlap")
        grid = model_grid(cfg.transforms, held[0.0].pred.shape, held[0.0].spacing)
        roi = cfg.roi_size
        base, ours = statistics.median(times[0.5]), statistics.median(times[0.0])
        print(
            f"{case.id}: model grid {list(grid)}, windows of {roi}: {window_count(grid, roi, 0.5)} per "
            f"pass at 0.5, {window_count(grid, roi, 0.0)} tiled; held-out prediction {ours:.2f} s against "
            f"the baseline's {base:.2f} s (ratio {ours / base:.2f}; rounds "
            f"{', '.join(format(a / b, '.2f') for a, b in zip(times[0.0], times[0.5], strict=True))}); "
            f"identical label maps; flip score {held[0.0].uncertainty:.4f} tiled, "
            f"{held[0.5].uncertainty:.4f} at 0.5",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--branch-only", action="store_true")
    parser.add_argument(
        "--score-passes", action="store_true", help="only the score's overlap, on the CT cases"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if not args.score_passes:
        branch(max(args.rounds, 3))
    if args.branch_only:
        return 0
    if not (args.data / "ct" / "totalsegmentator-example").is_dir():
        print(f"skipped: the real CT cases are not in {args.data / 'ct'}")
        return 0
    from medseg.run_dir import FoldDir

    with tempfile.TemporaryDirectory() as tmp:
        cfg, cases, model = setting(args.data, Path(tmp) / "run")
        fold = FoldDir(Path(tmp) / "run" / "fold_0", 0)
        if args.score_passes:
            score_passes(cfg, cases, model, fold, args.rounds)
            return 0
        for case in cases:
            one_case(cfg, case, model, fold)  # warm-up: imports, first decode
            runs = [one_case(cfg, case, model, fold) for _ in range(args.rounds)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            before = med["predict"] + med["score_baseline"] + med["overlay"]
            after = med["predict"] + med["score"] + med["overlay"]
            print(
                f"{case.id}: read + 4-pass inference + write {med['predict']:.2f} s, "
                f"overlay {med['overlay']:.2f} s (prediction {med['predict'] / after:.0%} of the case); "
                f"metrics {med['score']:.2f} s against the baseline's {med['score_baseline']:.2f} s "
                f"(ratio {med['score'] / med['score_baseline']:.2f}, identical values); held-out case "
                f"{after:.2f} s against {before:.2f} s (ratio {after / before:.2f}); "
                f"rounds: {', '.join(format(r['score'] / r['score_baseline'], '.2f') for r in runs)}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
