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

    python benchmarks/bench_train_throughput.py [--device auto|cpu|cuda] [--steps 24] [--rounds 5]
        [--studies isic,ct] [--loader standard,device] [--amp on,off] [--max-cases N]
        [--set KEY=VALUE ...] [--data DIR] [--json FILE]

``--loader`` and ``--amp`` take one value or several (each combination measured in turn, the
pipeline's own setting when not given; AMP only acts on CUDA); ``--max-cases`` trains on the first
N cases only; ``--set`` changes other settings; ``--data`` is the folder holding
``ph2-isic-layout`` and ``ct`` (default ../shared/data); ``--json`` writes the figures to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from medseg.config.models import PipelineConfig
    from medseg.io.case import Case

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STUDIES = {"isic": ("isic.yaml", "ph2-isic-layout"), "ct": ("ct.yaml", "ct")}


def _config(pipeline: str, root: Path, device: str, run: Path, settings: list[str]) -> PipelineConfig:
    from medseg.config.load import load_pipeline

    overrides = [f"data.root={root}", f"train.device={device}", f"output_dir={run}", *settings]
    return load_pipeline(ROOT / "pipelines" / pipeline, overrides)


def _cases(cfg: PipelineConfig, max_cases: int | None) -> list[Case]:
    from medseg.data.datalist import build_datalist

    cases, _ = build_datalist(cfg.data, cfg.transforms.spatial_dims, cfg.image_channels)
    return cases[:max_cases] if max_cases else cases


def _with_statistics(cfg: PipelineConfig, cases: list[Case], run: Path) -> PipelineConfig:
    """The config with its intensity statistics, gathered once per study into ``run``."""
    from medseg.pipeline.stages import resolve_statistics
    from medseg.run_dir import RunDir

    run.mkdir(parents=True, exist_ok=True)
    return resolve_statistics(cfg, cases, RunDir(run))


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(cfg: PipelineConfig, cases: list[Case], steps: int, rounds: int = 5) -> dict[str, Any]:

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
    ctx = EpochContext(state.model, loss, device, options, DistInfo(), build_inferer(cfg.infer, cfg.roi_size))

    train_epoch(ctx, state, loader, "warm-up", 1)  # caches, workers, kernels
    batch = next(iter(loader))
    fixed = [{k: batch[k].to(device) for k in ("image", "label")}] * steps
    n = fixed[0]["image"].shape[0]
    train_epoch(ctx, state, fixed[:2], "warm-up", 1)
    per_epoch = len(loader.dataset) * (cfg.transforms.patches_per_image if cfg.transforms.patch_size else 1)

    def timed(run: Any) -> float:
        _sync(device)
        t0 = time.perf_counter()
        count = run()
        _sync(device)
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
    return {
        "bare": statistics.median(b for b, _ in pairs),
        "medseg": statistics.median(o for _, o in pairs),
        "ratios": sorted(ours / bare for bare, ours in pairs),
        "batch": n,
        "workers": worker_count(cfg, len(cases), device),
        "loader": loader_kind(cfg, device, len(cases)),
        "device": device.type,
        "amp": options.scaled,
    }


def _variants(loaders: str | None, amps: str | None) -> list[tuple[list[str], str]]:
    """The settings of each combination of ``--loader`` and ``--amp``, with its name."""
    loader_values: list[str | None] = [*loaders.split(",")] if loaders else [None]
    amp_values: list[str | None] = [*amps.split(",")] if amps else [None]
    out = []
    for loader in loader_values:
        for amp in amp_values:
            sets = ([f"train.loader={loader}"] if loader else []) + (
                [f"train.amp={'true' if amp == 'on' else 'false'}"] if amp else []
            )
            name = "/".join(x for x in (loader, f"amp_{amp}" if amp else None) if x) or "default"
            out.append((sets, name))
    return out


def _line(what: str, r: dict[str, Any]) -> str:
    rounds = ", ".join(f"x{x:.2f}" for x in r["ratios"])
    return (
        f"{what}, batch {r['batch']}, loader {r['loader']}, {r['workers']} worker(s), "
        f"AMP {'on' if r['amp'] else 'off'}): bare model step {r['bare']:.2f} samples/s, "
        f"medseg loader {r['medseg']:.2f} samples/s (medians of {len(r['ratios'])} alternated rounds), "
        f"ratio x{r['ratio']:.2f} (rounds: {rounds})"
    )


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    """Write the figures under a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(figures, indent=1))
    tmp.replace(path)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--studies", default="isic,ct", help="comma-separated: isic, ct")
    parser.add_argument("--loader", help="train.loader values, comma-separated: auto, standard, device")
    parser.add_argument("--amp", help="on, off or on,off (CUDA only)")
    parser.add_argument("--max-cases", type=int)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args, _ = parser.parse_known_args()
    print(f"torch threads {torch.get_num_threads()}, device {args.device}")
    figures: dict[str, Any] = {}
    for name in args.studies.split(","):
        pipeline, folder = STUDIES[name]
        root = args.data / folder
        if not root.is_dir():
            print(f"{name}: skipped, {root} is not present")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            cases = _cases(_config(pipeline, root, args.device, run, args.settings), args.max_cases)
            for sets, variant in _variants(args.loader, args.amp):
                cfg = _config(pipeline, root, args.device, run, [*args.settings, *sets])
                r = measure(_with_statistics(cfg, cases, run), cases, args.steps, args.rounds)
                r["ratio"] = statistics.median(r["ratios"])
                figures[f"{name}/{variant}"] = r | {"cases": len(cases)}
                print(_line(f"{name} ({pipeline}, {variant}, {len(cases)} cases", r), flush=True)
                if args.json:  # after each, so that the figures outlast a later one that is stopped
                    _write_json(args.json, figures)


if __name__ == "__main__":
    main()
