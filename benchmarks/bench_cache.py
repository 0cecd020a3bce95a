"""Training-loader throughput: MONAI CacheDataset (medseg's loader) against an uncached MONAI Dataset.

Both loaders run the same `pipelines/ct.yaml` training chain: reading (DICOM series decoded from
JPEG 2000, NIfTI), label selection, clip-and-z-score, resampling to 1.5 x 1.5 x 3 mm and padding are
deterministic and cached once by CacheDataset; the random patch sampling and augmentation run on
every draw in both. The baseline is MONAI's plain `Dataset`, which repeats the whole chain on every
draw. Data: the real CT cases in ../shared/data/ct when present, otherwise synthetic CT volumes.

    python benchmarks/bench_cache.py [--epochs 5]

Prints samples per second of each loader after the cache is filled, the ratio, and the one-off
time to fill the cache.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.config.models import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ct" / "totalsegmentator-example"


def _config(out: Path) -> PipelineConfig:
    from medseg.config.load import load_pipeline

    overrides = [f"output_dir={out / 'run'}"]
    if not DATA.is_dir():
        overrides += [
            f"data.root={out / 'data'}",
            "data.cases=null",
            "data.synthetic={kind: ct, n_cases: 4, height: 160, width: 160, depth: 40}",
            "data.num_classes=3",
            "data.labels={liver: 5, spleen: 1}",
            "evaluate.nsd_tolerance=[2.0, 2.0]",
        ]
    return load_pipeline(ROOT / "pipelines" / "ct.yaml", overrides)


def _samples_per_second(loader: Iterable[dict[str, Any]], epochs: int) -> tuple[float, int]:
    n = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            n += int(batch["image"].shape[0])
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    import torch
    from monai.data import CacheDataset, DataLoader, Dataset

    from medseg.chains import train_transforms
    from medseg.pipeline.stages import ingest, resolve_statistics
    from medseg.run_dir import RunDir

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cfg = _config(out)
        run_dir = out / "run"
        run_dir.mkdir(parents=True)
        cases, _ = ingest(cfg, run_dir)
        cfg = resolve_statistics(cfg, cases, RunDir(run_dir))
        items = [c.item() for c in cases]
        batch = cfg.train.batch_size
        source = "real CT (../shared/data/ct)" if DATA.is_dir() else "synthetic CT"
        print(f"data: {source}, {len(items)} cases; {args.epochs} epochs per loader, batch {batch}")

        plain = DataLoader(
            Dataset(items, train_transforms(cfg.data, cfg.transforms)), batch_size=batch, shuffle=True
        )
        t0 = time.perf_counter()
        cached_ds = CacheDataset(
            items, train_transforms(cfg.data, cfg.transforms), cache_rate=1.0, progress=False
        )
        fill = time.perf_counter() - t0
        cached = DataLoader(cached_ds, batch_size=batch, shuffle=True)

        base_rate, n_base = _samples_per_second(plain, args.epochs)
        cache_rate, n_cache = _samples_per_second(cached, args.epochs)
        print(f"baseline MONAI Dataset (uncached):  {base_rate:8.2f} samples/s ({n_base} samples)")
        print(f"medseg CacheDataset:                {cache_rate:8.2f} samples/s ({n_cache} samples)")
        print(f"ratio cached / uncached:            x{cache_rate / base_rate:.1f}")
        print(f"one-off cache fill: {fill:.1f} s (the uncached loader pays about this on every epoch)")


if __name__ == "__main__":
    main()
