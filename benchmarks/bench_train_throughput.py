"""Training throughput: a real pipeline's loader against the bare model step on tensors in memory.

For `pipelines/isic.yaml` on PH2 (../shared/data/ph2-isic-layout) and `pipelines/ct.yaml` on the
shared CT cases, the same network, loss, optimiser and step code (`medseg.train.epoch.train_epoch`)
run twice in one process:

- baseline, the bare model step: one batch already augmented and on the device, given again and
  again (no reading, no augmentation, no copy);
- medseg: the fold's real loader (`medseg.train.loaders.make_loaders`: cache, random patches and
  augmentation, `train.loader` and `train.num_workers` as resolved), epochs after a warm-up epoch.

The two alternate for ``--rounds`` rounds, so that a slow spell of a shared machine falls on both.
Prints the median samples per second of each and the median ratio medseg / bare, with every
round's ratio (target: at least 0.9 on a CPU, 0.8 on a GPU).

    python benchmarks/bench_train_throughput.py [--device auto|cpu|cuda] [--steps 24]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
STUDIES = {
    "isic": ("isic.yaml", SHARED / "ph2-isic-layout"),
    "ct": ("ct.yaml", SHARED / "ct"),
}


def _setup(pipeline: str, root: Path, device: str, tmp: Path) -> tuple[Any, list[dict[str, Any]]]:
    from medseg.config.load import load_pipeline
    from medseg.data.datalist import build_datalist
    from medseg.pipeline.stages import resolve_statistics
    from medseg.run_dir import RunDir

    cfg = load_pipeline(
        ROOT / "pipelines" / pipeline, [f"data.root={root}", f"train.device={device}", f"output_dir={tmp}"]
    )
    cases, _ = build_datalist(cfg.data, cfg.transforms.spatial_dims, cfg.image_channels)
    tmp.mkdir(parents=True, exist_ok=True)
    return resolve_statistics(cfg, cases, RunDir(tmp)), cases


def measure(cfg: Any, cases: list[dict[str, Any]], steps: int, rounds: int = 5) -> dict[str, Any]:
    import torch

    from medseg.registry import build_inferer
    from medseg.runtime import pick_device
    from medseg.train.distributed import DistInfo
    from medseg.train.epoch import EpochContext, train_epoch
    from medseg.train.loaders import loader_kind, make_loaders, worker_count
    from medseg.train.losses import training_loss
    from medseg.train.state import new_state
    from medseg.train.step_options import step_options

    device = pick_device(cfg.train.device)
    options = step_options(cfg.train, device)
    loader, _ = make_loaders(cfg, cases, [], seed=0, device=device)
    state = new_state(cfg, device, options)
    loss = training_loss(cfg).to(device)
    ctx = EpochContext(state.model, loss, device, options, DistInfo(), build_inferer(cfg))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    train_epoch(ctx, state, loader, "warm-up", 1)  # caches, workers, kernels
    batch = next(iter(loader))
    fixed = [{k: batch[k].to(device) for k in ("image", "label")}] * steps
    n = fixed[0]["image"].shape[0]
    train_epoch(ctx, state, fixed[:2], "warm-up", 1)
    per_epoch = len(loader.dataset) * (cfg.transforms.patches_per_image if cfg.transforms.patch_size else 1)

    def timed(run: Any) -> float:
        sync()
        t0 = time.perf_counter()
        count = run()
        sync()
        return count / (time.perf_counter() - t0)

    def bare_steps() -> int:
        train_epoch(ctx, state, fixed, "bare", 1)
        return n * steps

    def loader_epochs() -> int:
        seen = 0
        while seen < n * steps:
            train_epoch(ctx, state, loader, "loader", 1)
            seen += per_epoch
        return seen

    # alternated, so that a slower spell of a shared machine falls on both sides
    pairs = [(timed(bare_steps), timed(loader_epochs)) for _ in range(rounds)]
    ratios = sorted(ours / bare for bare, ours in pairs)
    bare = statistics.median(b for b, _ in pairs)
    ours = statistics.median(o for _, o in pairs)
    return {
        "bare": bare,
        "medseg": ours,
        "ratios": ratios,
        "batch": n,
        "workers": worker_count(cfg, len(cases), device),
        "loader": loader_kind(cfg, device, len(cases)),
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    args, _ = parser.parse_known_args()
    print(f"torch threads {torch.get_num_threads()}, device {args.device}")
    for name, (pipeline, root) in STUDIES.items():
        if not root.is_dir():
            print(f"{name}: skipped, {root} is not present")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cfg, cases = _setup(pipeline, root, args.device, Path(tmp) / "run")
            r = measure(cfg, cases, args.steps, args.rounds)
        rounds = ", ".join(f"x{x:.2f}" for x in r["ratios"])
        print(
            f"{name} ({pipeline}, {len(cases)} cases, batch {r['batch']}, loader {r['loader']}, "
            f"{r['workers']} worker(s)): bare model step {r['bare']:.2f} samples/s, "
            f"medseg loader {r['medseg']:.2f} samples/s (medians of {len(r['ratios'])} alternated rounds), "
            f"ratio x{statistics.median(r['ratios']):.2f} (rounds: {rounds})"
        )


if __name__ == "__main__":
    main()
