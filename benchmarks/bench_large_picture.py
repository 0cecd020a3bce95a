"""Memory of one held-out 8000x6000 picture: predicting, scoring and drawing it, against reading it.

A study whose held-out fold holds one very large picture (8000x6000, 48 million pixels: a scanned
slide or a camera photo) once took 9.5 GB for that case, 2.7 GB before the held-out uncertainty and
the overlays, and died under a 6 GB cap with an "unexpected MemoryError". Labels now stay uint8 from
reader to score, the image goes before scoring and overlays are drawn from every 8th pixel.

Each stage runs in a fresh process (a small untrained UNet; the settings of `pipelines/demo.yaml`'s
size, held-out flip uncertainty and overlays on), and its peak resident memory above what the
process held before the stage is measured (the peak reset through `/proc/self/clear_refs`, then
`VmHWM`, Linux 4.0 and later). Baseline: reading the case as held-out
evaluation reads it (image as float32, label as stored), in the same run.

    python benchmarks/bench_large_picture.py [--height 6000 --width 8000] [--cap-gb 1.0]

`--cap-gb` also runs the held-out stage with its address space capped at what the process maps
plus that much, and prints the one line it ends with (a clear error naming the case, or "fitted").
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medseg.config.models import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]


def make_case(root: Path, height: int, width: int) -> None:
    """One picture with a dark disk on a light ground, and its mask, as a one-row case table."""
    import numpy as np
    from PIL import Image, ImageDraw

    root.mkdir(parents=True)
    picture = Image.new("RGB", (width, height), (200, 170, 150))
    mask = Image.new("L", (width, height), 0)
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    ImageDraw.Draw(picture).ellipse(box, fill=(90, 50, 40))
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    picture.save(root / "BIG.jpg", quality=90)
    mask.save(root / "BIG_segmentation.png")
    assert np.asarray(mask).max() == 255


def _config(data: Path, out: Path) -> PipelineConfig:
    from medseg.config.load import bind_components, validate_dict

    cases = [{"id": "BIG", "image": "BIG.jpg", "label": "BIG_segmentation.png"}]
    return bind_components(
        validate_dict(
            {
                "name": "large-picture",
                "output_dir": str(out),
                "data": {"root": str(data), "layout": "table", "cases": cases, "metadata": None},
                "split": {"n_folds": 2},
                "transforms": {"spatial_size": [192, 256]},
                "model": {
                    "name": "UNet",
                    "args": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
                },
                "evaluate": {"uncertainty": True, "overlays": "all"},
            }
        )
    )


def stage(name: str, data: Path, out: Path, cap_gb: float | None) -> dict:
    """Run one stage in this process; its peak memory above the start, in MB."""
    import torch

    from medseg.chains import original_size_transforms
    from medseg.errors import MedsegError
    from medseg.io.checkpoint import save_checkpoint
    from medseg.pipeline.fold import evaluate_fold
    from medseg.pipeline.stages import ingest
    from medseg.registry import build_network
    from medseg.run_dir import RunDir
    from medseg.train.loop import FoldResult

    torch.set_num_threads(1)
    cfg = _config(data, out)
    run = RunDir(out)
    run.root.mkdir(parents=True, exist_ok=True)
    cases, _ = ingest(cfg, run.root)
    fold = run.fold(0)
    torch.manual_seed(0)
    save_checkpoint(fold.best, {"model": build_network(cfg.network).state_dict()})
    if cap_gb is not None:
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (mapped + int(cap_gb * 2**30), resource.RLIM_INFINITY))
    before = _reset_peak()
    outcome = "fitted"
    try:
        if name == "read":
            from monai.data import Dataset

            item = Dataset([cases[0].item()], transform=original_size_transforms(cfg.data, cfg.transforms))[0]
            del item
        else:
            result = FoldResult(0, float("nan"), 0, fold.best, fold.best, [])
            evaluate_fold(cfg, fold, cases, result)
    except MedsegError as err:
        outcome = f"error: {err}"
    return {"stage": name, "mb": (_status_kb("VmHWM") - before) / 1024, "outcome": outcome}


def _status_kb(field: str) -> int:
    """A size from /proc/self/status, in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Start the peak resident size (VmHWM) afresh from now (Linux 4.0+); the resident size now, kB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def _run_stage(name: str, data: Path, out: Path, cap_gb: float | None = None) -> dict:
    command = [sys.executable, __file__, "--stage", name, "--data", str(data), "--out", str(out)]
    command += ["--cap-gb", str(cap_gb)] if cap_gb is not None else []
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        return {"stage": name, "mb": float("nan"), "outcome": f"exit {proc.returncode}: {proc.stderr[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=6000)
    parser.add_argument("--width", type=int, default=8000)
    parser.add_argument("--cap-gb", type=float, default=None)
    parser.add_argument("--stage", choices=["read", "heldout"], default=None)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args.data, args.out, args.cap_gb)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_case(data, args.height, args.width)
        read = _run_stage("read", data, Path(tmp) / "run-read")
        held = _run_stage("heldout", data, Path(tmp) / "run-heldout")
        print(f"picture: {args.width}x{args.height} ({args.width * args.height / 1e6:.0f} million pixels)")
        print(f"baseline, reading the case: {read['mb']:.0f} MB")
        print(
            f"predicting, scoring (flip uncertainty) and drawing it: {held['mb']:.0f} MB, "
            f"x{held['mb'] / read['mb']:.2f} the baseline; {held['outcome']}"
        )
        if args.cap_gb is not None:
            capped = _run_stage("heldout", data, Path(tmp) / "run-capped", args.cap_gb)
            print(f"under a cap of {args.cap_gb} GB more than mapped: {capped['outcome']}")


if __name__ == "__main__":
    main()
