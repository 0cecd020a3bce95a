"""Training step options on the CPU against the bare float32 MONAI step, measured in one run.

`pipelines/isic.yaml` at its settings on PH2 (../shared/data/ph2-isic-layout): MONAI UNet (16-256
channels, 2 residual units), 192x256, batch 8, DiceCE, AdamW at lr 0.002, all built through
medseg's registry (`medseg.train.state.new_state`, `medseg.train.losses.training_loss`) and stepped
by medseg's own step (`medseg.train.epoch.train_epoch`). Each option trains its own copy of the
network:

- fp32, the baseline: the bare float32 step on one augmented batch already in memory;
- bf16: bfloat16 autocast (`train.precision: bf16`); channels-last (`train.channels_last`);
  compile (`train.compile`: torch.compile with inductor); and their combinations.

Speed: after a warm-up (for compiled options the compilation, timed from an empty inductor cache
unless --warm-cache: the first step, a first step at another batch size as an epoch's last batch
gives, and the first step of a second network as the next fold gives), the options alternate for
--rounds rounds of --steps steps each, so that a slow spell of a shared machine falls on all.
Printed: median samples per second and the median and range of each round's ratio to fp32 in that
same round.

Trains as well: every option trains --loss-steps steps from the same initial weights on the same
sequence of augmented PH2 batches; the trained weights are then scored in float32 on those
batches (DiceCE). Set beside fp32's score: fp32 trained from another initial seed, the spread the
initial weights alone give. An option within that spread trains as well as fp32.

Inference: the trained fp32 weights on one 192x256 image (isic's one window per image) without
gradients, in fp32, channels-last and bf16: milliseconds per image (medians of alternated rounds)
and the largest difference of a softmax probability from fp32's.

    flock /tmp/medseg-heavy.lock python benchmarks/bench_train_step_options.py \
        [--rounds 15] [--steps 1] [--loss-steps 20] [--options channels-last,compile] [--warm-cache]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.config.models import PipelineConfig
    from medseg.train.step_options import StepOptions

ROOT = Path(__file__).resolve().parents[1]
PH2 = ROOT.parent / "shared" / "data" / "ph2-isic-layout"
OPTIONS = (
    "fp32",
    "bf16",
    "channels-last",
    "bf16+channels-last",
    "compile",
    "channels-last+compile",
    "bf16+compile",
)


def options_of(name: str) -> StepOptions:
    """The StepOptions a name such as ``bf16+channels-last`` stands for."""
    import torch

    from medseg.train.step_options import StepOptions

    parts = set(name.split("+"))
    dtype = torch.bfloat16 if "bf16" in parts else None
    return StepOptions(dtype, "channels-last" in parts, "compile" in parts)


def setup(tmp: Path, n_batches: int) -> tuple[PipelineConfig, list[dict[str, Any]]]:
    """The bound isic.yaml configuration on PH2 and ``n_batches`` augmented batches drawn once."""
    import torch

    from medseg.config.load import load_pipeline
    from medseg.data.datalist import build_datalist
    from medseg.pipeline.stages import resolve_statistics
    from medseg.run_dir import RunDir
    from medseg.train.loaders import make_loaders

    cfg = load_pipeline(
        ROOT / "pipelines" / "isic.yaml", [f"data.root={PH2}", "train.device=cpu", f"output_dir={tmp}"]
    )
    cases, _ = build_datalist(cfg.data, cfg.transforms.spatial_dims, cfg.image_channels)
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = resolve_statistics(cfg, cases, RunDir(tmp))
    loader, _ = make_loaders(cfg, cases, [], seed=0)
    batches: list[dict[str, Any]] = []
    while len(batches) < n_batches:  # full batches, as plain tensors (the step's input)
        batches += [
            {k: b[k].as_subclass(torch.Tensor) for k in ("image", "label")}
            for b in loader
            if len(b["image"]) == cfg.train.batch_size
        ]
    return cfg, batches[:n_batches]


class Runner:
    """One option's network, optimiser and step, from the initial weights of ``seed``."""

    def __init__(self, cfg: PipelineConfig, name: str, seed: int = 0) -> None:
        import torch

        from medseg.train.distributed import DistInfo
        from medseg.train.epoch import EpochContext
        from medseg.train.losses import training_loss
        from medseg.train.state import new_state
        from medseg.train.step_options import trained_module

        self.name, self.options = name, options_of(name)
        cpu = torch.device("cpu")
        torch.manual_seed(seed)
        self.state = new_state(cfg, cpu, self.options)
        self.loss = training_loss(cfg)
        net = trained_module(self.state.model, self.options)
        eager = self.state.model if self.options.compile else None
        self.ctx = EpochContext(net, self.loss, cpu, self.options, DistInfo(), None, eager=eager)

    def steps(self, batches: list[dict[str, Any]]) -> float:
        """Train on ``batches``, one step each; the seconds it took."""
        from medseg.train.epoch import train_epoch

        t0 = time.perf_counter()
        train_epoch(self.ctx, self.state, batches, self.name, 1)
        return time.perf_counter() - t0

    def score(self, batches: list[dict[str, Any]]) -> float:
        """The mean float32 loss of the current weights on ``batches`` (eval mode, no gradients)."""
        import torch

        model = self.state.model.eval()
        with torch.no_grad():
            total = sum(float(self.loss(model(b["image"]), b["label"])) for b in batches)
        model.train()
        return total / len(batches)


def warm_up(runner: Runner, cfg: PipelineConfig, batch: dict[str, Any]) -> str:
    """Warm-up steps; for a compiled option the compile times, as a printed note."""
    if not runner.options.compile:
        runner.steps([batch] * 2)
        return ""
    first = runner.steps([batch])
    step = min(runner.steps([batch]) for _ in range(2))
    smaller = {k: v[:-1] for k, v in batch.items()}
    other = runner.steps([smaller])
    runner.steps([batch])
    fold2 = Runner(cfg, runner.name, seed=1).steps([batch])
    return (
        f"{runner.name}: first step {first:.1f} s (step {step:.2f} s), first step at batch "
        f"{len(smaller['image'])} {other:.1f} s, first step of a second network {fold2:.1f} s"
    )


def speed(
    cfg: PipelineConfig, names: list[str], batch: dict[str, Any], rounds: int, steps: int
) -> dict[str, Any]:
    """Samples per second of each option, alternated over rounds; compile notes."""
    runners = [Runner(cfg, n) for n in names]
    notes = [note for r in runners if (note := warm_up(r, cfg, batch))]
    n = len(batch["image"]) * steps
    per_round = [{r.name: n / r.steps([batch] * steps) for r in runners} for _ in range(rounds)]
    return {"rounds": per_round, "notes": notes}


def trains_as_well(cfg: PipelineConfig, names: list[str], batches: list[dict[str, Any]]) -> dict[str, float]:
    """Float32 loss after ``len(batches)`` steps from the same start, per option; ``fp32 seed 1``
    starts from other initial weights."""
    scores: dict[str, float] = {}
    for name, seed in [(n, 0) for n in names] + [("fp32", 1)]:
        runner = Runner(cfg, name, seed)
        runner.steps(batches)
        scores[name if seed == 0 else f"{name} seed {seed}"] = runner.score(batches)
    return scores


def inference(cfg: PipelineConfig, batch: dict[str, Any], rounds: int) -> dict[str, tuple[float, float]]:
    """Per variant: median ms per image and the largest probability difference from fp32."""
    import torch

    runner = Runner(cfg, "fp32")
    runner.steps([batch] * 3)
    model = runner.state.model.eval()
    x = batch["image"][:1]
    variants = {
        "fp32": (x, None),
        "channels-last": (x.contiguous(memory_format=torch.channels_last), None),
        "bf16": (x, torch.bfloat16),
    }

    def run(name: str) -> tuple[float, torch.Tensor]:
        xi, dtype = variants[name]
        if name == "channels-last":
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            t0 = time.perf_counter()
            p = torch.softmax(model(xi).float(), 1)
            seconds = time.perf_counter() - t0
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        return seconds, p

    ref = run("fp32")[1]
    times: dict[str, list[float]] = {k: [] for k in variants}
    diffs = {k: float((run(k)[1] - ref).abs().max()) for k in variants}
    for _ in range(rounds):
        for k in variants:
            times[k].append(run(k)[0])
    return {k: (1000 * statistics.median(times[k]), diffs[k]) for k in variants}


def report(result: dict[str, Any], names: list[str], batch_size: int) -> None:
    rounds = result["rounds"]
    for note in result["notes"]:
        print(f"  compile: {note}")
    print(f"  speed, {len(rounds)} alternated rounds (samples/s median; ratio to fp32 median [range]):")
    for name in names:
        sps = statistics.median(r[name] for r in rounds)
        ratios = sorted(r[name] / r["fp32"] for r in rounds)
        print(
            f"    {name:24s} {sps:6.2f} samples/s  x{statistics.median(ratios):.2f} "
            f"[{ratios[0]:.2f}-{ratios[-1]:.2f}]  ({batch_size / sps:.3f} s/step)"
        )


def main() -> None:
    import os

    if "--warm-cache" not in sys.argv:  # compile times from an empty inductor cache, as a first run pays
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")
    import torch

    from medseg.runtime import native_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--loss-steps", type=int, default=20, help="0: speed alone")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--warm-cache", action="store_true", help="keep the inductor cache of earlier runs")
    args = parser.parse_args()
    names = ["fp32", *[n for n in args.options.split(",") if n and n != "fp32"]]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}"
    )
    if not PH2.is_dir():
        print(f"skipped: {PH2} is not present")
        return
    with tempfile.TemporaryDirectory() as tmp:
        cfg, batches = setup(Path(tmp) / "run", max(1, args.loss_steps))
    print(f"isic.yaml on PH2: batch {cfg.train.batch_size}, {cfg.transforms.spatial_size}, {cfg.model.name}")
    report(speed(cfg, names, batches[0], args.rounds, args.steps), names, cfg.train.batch_size)
    if args.loss_steps < 1:
        return
    scores = trains_as_well(cfg, names, batches)
    base, spread = scores["fp32"], abs(scores["fp32 seed 1"] - scores["fp32"])
    print(f"  float32 loss after {args.loss_steps} steps from the same start (fp32 {base:.4f}):")
    for name, value in scores.items():
        print(f"    {name:24s} {value:.4f}  ({(value - base) / base:+.1%} of fp32's)")
    print(f"  spread from the initial weights alone: {spread / base:.1%} of fp32's loss")
    print("  inference, one 192x256 image (ms median; largest |probability - fp32's|):")
    for name, (ms, diff) in inference(cfg, batches[0], args.rounds).items():
        print(f"    {name:24s} {ms:7.1f} ms  {diff:.2e}")


if __name__ == "__main__":
    main()
