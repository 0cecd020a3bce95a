"""Batch inference: `medseg predict` against a plain MONAI `sliding_window_inference` loop.

Both use the same network (`pipelines/ct.yaml`: its 3D UNet, 2 fold models, 1.5 x 1.5 x 3 mm,
96 x 96 x 16 windows, overlap 0.5, Gaussian weighting) on the same volume: the real 20-slice CT
series in ../shared/data/ct (JPEG 2000), copied under new UIDs so that a DICOM SEG can be written.
The baseline is the bare loop that medseg's work is built around: the volume already read,
preprocessed and resampled in memory, `sliding_window_inference` per fold model, mean softmax,
argmax, on the model grid; nothing is read, checked, resampled back or written. `medseg predict`
does the whole job per series: scan and check the DICOM headers, decode, HU, canonical
orientation, clip-and-z-score, resampling, the same inference, resampling back, NIfTI on the
source grid, DICOM SEG, manifest; reading in `--workers` processes and writing in a thread,
beside inference (the default worker count); the seconds of each stage are printed too.
Weights are seeded random: speed does not depend on them.

    python benchmarks/bench_predict.py [--series 4] [--device auto|cpu|cuda]

Each side runs in its own process after one warm-up series, so the peak memory (resident set,
and CUDA allocations on a GPU) is its own. Prints series per minute, peak memory and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERIES = ROOT.parent / "shared" / "data" / "ct" / "totalsegmentator-example" / "dicom"
STATS = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 40, std: 300}}]"


def _run_dir(out: Path, device: str) -> Path:
    import torch

    from medseg.config.load import dump_config, load_pipeline
    from medseg.io.checkpoint import save_checkpoint
    from medseg.registry import build_network

    overrides = [f"output_dir={out}", STATS, f"train.device={device}"]
    cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml", overrides)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    for fold in range(2):
        torch.manual_seed(fold)
        weights = {"model": build_network(cfg).state_dict()}
        save_checkpoint(out / f"fold_{fold}" / "checkpoints" / "best.pt", weights)
        (out / f"fold_{fold}" / "metrics.csv").write_text("case,label\n")
    return out


def _peaks(device: object) -> dict[str, float]:
    import torch

    peaks = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if str(device) == "cuda":
        peaks["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peaks


def worker_medseg(work: Path, n: int) -> dict[str, float]:
    from medseg.infer.batch import predict_folder
    from medseg.runtime import pick_device
    from medseg.tracking.models import load_bundle

    bundle = load_bundle(str(work / "run"))
    device = pick_device(bundle.cfg.train.device)
    predict_folder(bundle, work / "warmup", work / "out_warmup", device)
    start = time.perf_counter()
    summary = predict_folder(bundle, work / "series", work / "out", device)
    seconds = time.perf_counter() - start
    assert summary["done"] == n and summary["failed"] == 0, summary
    stages = {f"stage_{k}": v / n for k, v in summary["stage_seconds"].items()}
    return {"seconds": seconds, "workers": summary["workers"], **stages, **_peaks(device)}


def worker_monai(work: Path, n: int) -> dict[str, float]:
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
    image = Compose(read_transforms(cfg, with_label=False))({"image": str(SERIES)})["image"]
    size = model_grid(cfg, image.shape[1:], [float(s) for s in image.meta["spacing"]])
    x = torch.nn.functional.interpolate(
        torch.as_tensor(image).as_subclass(torch.Tensor)[None].float(), size=size, mode="trilinear"
    ).to(device)
    amp = cfg.train.amp and device.type == "cuda"

    def once() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            probs = sum(
                torch.softmax(
                    sliding_window_inference(
                        x, cfg.roi_size, cfg.infer.sw_batch_size, m, cfg.infer.overlap, mode="gaussian"
                    ).float(),
                    1,
                )
                for m in models
            )
        return probs.argmax(1).cpu()  # type: ignore[union-attr]

    once()  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start, **_peaks(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--worker", choices=["medseg", "monai"])
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.worker:
        worker = worker_medseg if args.worker == "medseg" else worker_monai
        print(json.dumps(worker(args.work, args.series)))
        return
    if not SERIES.is_dir():
        print(f"skipped: the real CT series is not present at {SERIES}")
        return
    from medseg.data.dicom_copy import copy_with_new_uids

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _run_dir(work / "run", args.device)
        for i in range(args.series):
            copy_with_new_uids(SERIES, work / "series" / f"s{i}", f"bench-{i}")
        copy_with_new_uids(SERIES, work / "warmup" / "w", "bench-warmup")
        results = {}
        for name in ("monai", "medseg"):
            cmd = [sys.executable, __file__, "--worker", name, "--work", str(work)]
            cmd += ["--series", str(args.series)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:])
                raise SystemExit(f"{name} worker failed")
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
            shutil.rmtree(work / "out", ignore_errors=True)
    n = args.series
    base, ours = results["monai"], results["medseg"]
    print(f"{n} series of 20 slices (512 x 512, JPEG 2000), 2 fold models, device {args.device}")
    for name, r in (("plain MONAI sliding_window_inference loop", base), ("medseg predict", ours)):
        extra = f", peak CUDA {r['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in r else ""
        print(
            f"  {name}: {60 * n / r['seconds']:.1f} series/min ({r['seconds'] / n:.2f} s per series), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB{extra}"
        )
    stages = ", ".join(f"{k[6:]} {v:.2f} s" for k, v in ours.items() if k.startswith("stage_"))
    print(f"  medseg per series, stage by stage ({ours['workers']} reading process(es)): {stages}")
    print(f"  time ratio medseg / MONAI loop: x{ours['seconds'] / base['seconds']:.2f}")
    print(f"  peak RSS ratio medseg / MONAI loop: x{ours['peak_rss_mb'] / base['peak_rss_mb']:.2f}")
    if "peak_cuda_mb" in ours:
        print(f"  peak CUDA ratio medseg / MONAI loop: x{ours['peak_cuda_mb'] / base['peak_cuda_mb']:.2f}")


if __name__ == "__main__":
    main()
