"""Batch inference: `medseg predict` against a plain MONAI `sliding_window_inference` loop.

Both use the same network (`pipelines/ct.yaml`: its 3D UNet, 2 fold models, 1.5 x 1.5 x 3 mm,
96 x 96 x 16 windows, overlap 0.5, Gaussian weighting) on the same volume: the real 20-slice CT
series in ../shared/data/ct (JPEG 2000), copied under new UIDs so that a DICOM SEG can be written.
The baseline is the bare loop that medseg's work is built around: the volume already read,
preprocessed and resampled in memory, `sliding_window_inference` per fold model, mean softmax,
argmax, on the model grid; nothing is read, checked, resampled back or written. `medseg predict`
does the whole job per series: scan and check the DICOM headers, decode, HU, canonical
orientation, clip-and-z-score, resampling, the same inference, resampling back, NIfTI on the
source grid, per-class volumes and components, DICOM SEG, manifest, with the default `--workers`:
on a GPU reading processes and a writer thread beside the device, on the CPU one single-threaded
process per core taking whole series; the seconds of each stage are printed too. Weights are
seeded random: the network's speed does not depend on them (the components count does a little:
random weights scatter every class over the whole volume).

    python benchmarks/bench_predict.py [--series 4] [--rounds 3] [--device auto|cpu|cuda]
        [--parts N] [--no-memory] [--set KEY=VALUE ...] [--data DIR] [--json FILE]

Each side runs in its own process after one warm-up series, the two sides alternating for
``--rounds`` rounds (the median is printed, with each round's ratio). The peak memory is each
side's own, measured in one more run per side (``--no-memory`` leaves that pass out): the
proportional set size of the process and its worker processes together (pages they share after a
fork counted once), and CUDA allocations on a GPU. Prints series per minute, peak memory and the
ratios. ``--parts N`` also runs N `medseg predict --part I/N` processes at once on the same
series, each started after its own warm-up, and prints their series per minute together against
one process's. ``--set`` changes the study's settings on both sides (``infer.sw_batch_size=8``,
``train.amp=false``); ``--data`` is the folder holding ``ct/totalsegmentator-example``
(default ../shared/data); ``--json`` writes the figures to a file as well.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
STATS = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 40, std: 300}}]"
BARRIER_S = 300  # how long a part waits for the others' warm-up


def series_dir(data: Path) -> Path:
    """The real CT series under the data folder."""
    return data / "ct" / "totalsegmentator-example" / "dicom"


def _run_dir(out: Path, device: str, settings: list[str]) -> Path:
    import torch

    from medseg.config.load import dump_config, load_pipeline
    from medseg.io.checkpoint import save_checkpoint
    from medseg.registry import build_network

    overrides = [f"output_dir={out}", STATS, f"train.device={device}", *settings]
    cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml", overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    for fold in range(2):
        torch.manual_seed(fold)
        weights = {"model": build_network(cfg.network).state_dict()}
        save_checkpoint(out / f"fold_{fold}" / "checkpoints" / "best.pt", weights)
        (out / f"fold_{fold}" / "metrics.csv").write_text("case,label\n")
    return out


class TreeMemory:
    """Peak memory of this process and its worker processes together, sampled every 50 ms: the sum
    of their proportional set sizes (PSS: pages shared after a fork counted once, not per process).
    Reading a process's PSS walks its page tables (about 20 ms for 1 GB), so the timed runs do
    without it: it runs in a pass of its own."""

    def __init__(self, on: bool) -> None:
        self.on = on
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        if on:
            self._thread.start()

    @staticmethod
    def _pss_kb(pid: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1])
        except OSError:  # a worker that has just ended
            pass
        return 0

    def _watch(self) -> None:
        import os

        me = str(os.getpid())
        while not self._stop.wait(0.05):
            kids = []
            for task in Path(f"/proc/{me}/task").iterdir():
                kids += (task / "children").read_text().split()
            self.peak_kb = max(self.peak_kb, sum(self._pss_kb(p) for p in [me, *kids]))

    def stop(self) -> float:
        """The peak in MB."""
        self._stop.set()
        if self.on:
            self._thread.join()
        return self.peak_kb / 1024


def _peaks(device: object, memory: TreeMemory) -> dict[str, float]:
    import torch

    peaks = {"peak_mem_mb": memory.stop()}
    if str(device) == "cuda":
        peaks["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peaks


def _wait_for_parts(barrier: Path, part: tuple[int, int]) -> None:
    """Say this part is warm, then wait until every part is, so that all start together."""
    (barrier / f"ready{part[0]}").touch()
    deadline = time.monotonic() + BARRIER_S
    while len(list(barrier.glob("ready*"))) < part[1]:
        if time.monotonic() > deadline:
            raise SystemExit(f"part {part[0]}/{part[1]}: the other parts were not ready in {BARRIER_S} s")
        time.sleep(0.02)


def worker_medseg(
    work: Path, n: int, memory_pass: bool, part: tuple[int, int] | None = None
) -> dict[str, float]:
    memory = TreeMemory(memory_pass)
    from medseg.infer.batch import predict_folder
    from medseg.runtime import pick_device
    from medseg.tracking.models import load_bundle

    bundle = load_bundle(str(work / "run"))
    device = pick_device(bundle.cfg.train.device)
    warm, out = ("out_warmup", "out") if part is None else (f"out_warmup_p{part[0]}", "out_parts")
    predict_folder(bundle, work / "warmup", work / warm, device)
    if part is not None:
        _wait_for_parts(work / "barrier", part)
    began = time.time()  # the wall clock, comparable between the parts' processes
    start = time.perf_counter()
    summary = predict_folder(bundle, work / "series", work / out, device, part=part or (1, 1))
    seconds = time.perf_counter() - start
    done = n if part is None else len(range(part[0] - 1, n, part[1]))
    assert summary["done"] == done and summary["failed"] == 0, summary
    stages = {f"stage_{k}": v / done for k, v in summary["stage_seconds"].items()}
    timing = {"seconds": seconds, "began": began, "ended": time.time(), "done": done}
    return {**timing, "workers": summary["workers"], **stages, **_peaks(device, memory)}


def worker_monai(work: Path, n: int, memory_pass: bool, series: Path) -> dict[str, float]:
    memory = TreeMemory(memory_pass)
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose

    from medseg.chains import read_transforms
    from medseg.infer.sliding import model_grid
    from medseg.runtime import pick_device
    from medseg.tracking.models import load_bundle

    bundle = load_bundle(str(work / "run"))
    cfg = bundle.cfg
    device = pick_device(cfg.train.device)
    models = bundle.load(device)
    image = Compose(read_transforms(cfg.data, cfg.transforms, with_label=False))({"image": str(series)})[
        "image"
    ]
    size = model_grid(cfg.transforms, image.shape[1:], [float(s) for s in image.meta["spacing"]])
    x = torch.nn.functional.interpolate(
        torch.as_tensor(image).as_subclass(torch.Tensor)[None].float(), size=size, mode="trilinear"
    ).to(device)
    amp = cfg.train.amp and device.type == "cuda"

    def once() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            logits = (
                cast(
                    torch.Tensor,
                    sliding_window_inference(
                        x, cfg.roi_size, cfg.infer.sw_batch_size, m, cfg.infer.overlap, mode="gaussian"
                    ),
                )
                for m in models
            )
            probs = functools.reduce(torch.add, (torch.softmax(z.float(), 1) for z in logits))
        return probs.argmax(1).cpu()

    once()  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start, **_peaks(device, memory)}


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time among ``runs``."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def _worker_cmd(args: argparse.Namespace, work: Path, name: str, memory: bool = False) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", name, "--work", str(work), "--data", str(args.data)]
    return cmd + ["--series", str(args.series)] + (["--memory"] if memory else [])


def _result(name: str, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"{name} worker failed")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def measure_sides(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Alternated rounds of the MONAI loop and medseg predict, then a memory pass per side."""

    def run(name: str, memory: bool = False) -> dict[str, Any]:
        proc = subprocess.run(_worker_cmd(args, work, name, memory), capture_output=True, text=True)
        for done in ("out", "out_warmup"):  # the next run starts afresh, its warm-up included
            shutil.rmtree(work / done, ignore_errors=True)
        return _result(name, proc)

    # alternated rounds, so that a slow spell of a shared machine falls on both sides
    rounds = [(run("monai"), run("medseg")) for _ in range(args.rounds)]
    results: dict[str, Any] = {
        name: _median_run([r[i] for r in rounds]) for i, name in enumerate(("monai", "medseg"))
    }
    if args.memory_pass:
        for name in results:  # peak memory in a pass of its own
            results[name] |= {k: v for k, v in run(name, memory=True).items() if k.startswith("peak")}
    results["ratios"] = [ours["seconds"] / base["seconds"] for base, ours in rounds]
    results["round_seconds"] = [[base["seconds"], ours["seconds"]] for base, ours in rounds]
    return results


def measure_parts(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``--parts`` medseg predict processes at once on the series, started together after warm-up."""
    (work / "barrier").mkdir()
    procs = [
        subprocess.Popen(
            [*_worker_cmd(args, work, "medseg"), "--part", f"{i}/{args.parts}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(1, args.parts + 1)
    ]
    runs = []
    for i, proc in enumerate(procs, 1):
        out, err = proc.communicate()
        runs.append(
            _result(f"part {i}/{args.parts}", subprocess.CompletedProcess([], proc.returncode, out, err))
        )
    seconds = max(r["ended"] for r in runs) - min(r["began"] for r in runs)
    assert sum(r["done"] for r in runs) == args.series
    return {"seconds": seconds, "part_seconds": [r["seconds"] for r in runs], "workers": runs[0]["workers"]}


def _report(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    """Print the figures; return them as one flat dictionary."""
    n = args.series
    base, ours = results["monai"], results["medseg"]
    ratio = statistics.median(results["ratios"])
    print(f"{n} series of 20 slices (512 x 512, JPEG 2000), 2 fold models, device {args.device}")
    for name, r in (("plain MONAI sliding_window_inference loop", base), ("medseg predict", ours)):
        mem = f", peak memory {r['peak_mem_mb']:.0f} MB" if args.memory_pass else ""
        extra = f", peak CUDA {r['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in r else ""
        print(
            f"  {name}: {60 * n / r['seconds']:.1f} series/min ({r['seconds'] / n:.2f} s per series)"
            f"{mem}{extra}"
        )
    stages = ", ".join(f"{k[6:]} {v:.2f} s" for k, v in ours.items() if k.startswith("stage_"))
    print(f"  medseg per series, stage by stage ({ours['workers']} worker process(es)): {stages}")
    each = ", ".join(
        f"x{r:.2f} ({b:.1f} / {o:.1f} s)"
        for r, (b, o) in zip(results["ratios"], results["round_seconds"], strict=True)
    )
    print(f"  time ratio medseg / MONAI loop: x{ratio:.2f} (median; rounds: {each})")
    if args.memory_pass:
        print(f"  peak memory ratio medseg / MONAI loop: x{ours['peak_mem_mb'] / base['peak_mem_mb']:.2f}")
    if "peak_cuda_mb" in ours:
        print(f"  peak CUDA ratio medseg / MONAI loop: x{ours['peak_cuda_mb'] / base['peak_cuda_mb']:.2f}")
    figures = {
        "series": n,
        "device": args.device,
        "monai_series_per_min": 60 * n / base["seconds"],
        "medseg_series_per_min": 60 * n / ours["seconds"],
        "time_ratio": ratio,
        "throughput_ratio": 1 / ratio,
        "round_ratios": results["ratios"],
        "workers": ours["workers"],
        "stage_seconds": {k[6:]: v for k, v in ours.items() if k.startswith("stage_")},
        **{
            f"{side}_{k}": v
            for side in ("monai", "medseg")
            for k, v in results[side].items()
            if k.startswith("peak") and (args.memory_pass or k != "peak_mem_mb")
        },
    }
    return figures


def _report_parts(args: argparse.Namespace, parts: dict[str, Any], figures: dict[str, Any]) -> None:
    """Print the ``--parts`` figure and add it to ``figures``."""
    per_min = 60 * args.series / parts["seconds"]
    print(
        f"  {args.parts} medseg predict --part processes at once: {per_min:.1f} series/min "
        f"({parts['seconds']:.1f} s for the {args.series}), "
        f"x{per_min / figures['medseg_series_per_min']:.2f} of one process"
    )
    figures |= {"parts": args.parts, "parts_series_per_min": per_min, "parts_seconds": parts["part_seconds"]}


def _write_json(path: Path, figures: dict[str, Any]) -> None:
    """Write the figures under a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(figures, indent=1))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", type=int, default=0, help="also N `--part` processes at once")
    parser.add_argument("--no-memory", dest="memory_pass", action="store_false", help="no memory pass")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", choices=["medseg", "monai"])
    parser.add_argument("--work", type=Path)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--part")
    args = parser.parse_args()
    series = series_dir(args.data)
    if args.worker == "medseg":
        from medseg.infer.parts import parse_part

        part = parse_part(args.part) if args.part else None
        print(json.dumps(worker_medseg(args.work, args.series, args.memory, part)))
        return
    if args.worker == "monai":
        print(json.dumps(worker_monai(args.work, args.series, args.memory, series)))
        return
    if not series.is_dir():
        print(f"skipped: the real CT series is not present at {series}")
        return
    from medseg.data.dicom_copy import copy_with_new_uids

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _run_dir(work / "run", args.device, args.settings)
        for i in range(args.series):
            copy_with_new_uids(series, work / "series" / f"s{i}", f"bench-{i}")
        copy_with_new_uids(series, work / "warmup" / "w", "bench-warmup")
        figures = _report(args, measure_sides(args, work))
        if args.json:  # written at once, so that the figures outlast a later part that is stopped
            _write_json(args.json, figures)
        if args.parts:
            _report_parts(args, measure_parts(args, work), figures)
            if args.json:
                _write_json(args.json, figures)


if __name__ == "__main__":
    main()
