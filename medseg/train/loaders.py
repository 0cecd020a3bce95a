"""Training and early-stopping loaders of a fold: cached MONAI datasets on the model grid.

Two recipes (``train.loader``):

- ``standard``: a ``CacheDataset`` in host memory, random transforms in ``DataLoader`` worker
  processes (``train.num_workers``; ``auto``: none on a CPU, whose cores the step's threads take;
  on a GPU one per spare core, at most 8 and one per four steps of an epoch), so augmentation
  overlaps the step. Workers start afresh each epoch, seeded from the loader's generator (saved in
  checkpoints), so a resumed fold still draws what an unbroken one would;
- ``device``: MONAI's fast-training recipe: the deterministic part of the chain cached on the GPU
  (``EnsureTyped(device=...)`` before the first random transform), a ``ThreadDataLoader`` without
  workers, and the random transforms applied to GPU tensors; no copy to the device per step.

``auto`` takes ``device`` for 2D studies on CUDA whose cache fits a quarter of the GPU memory (a
2D cache's size is known before reading: cases x spatial size), otherwise ``standard``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from medseg.chains import eval_transforms, train_transforms
from medseg.config.models import PipelineConfig
from medseg.io.case import Case
from medseg.runtime import cpu_cores as cores
from medseg.train.distributed import DistInfo, ShardedBatchSampler, local_batch_size

log = logging.getLogger(__name__)
DEVICE_CACHE_SHARE = 0.25  # of the GPU memory a device cache may take under ``loader: auto``


STEPS_PER_WORKER = 4  # workers start afresh each epoch: fewer steps than this do not repay one


def worker_count(cfg: PipelineConfig, n_fit: int, device: torch.device | None = None) -> int:
    """``train.num_workers``, or for ``auto``: none when training on a CPU (the step's own threads
    already take every core, and a worker started each epoch costs more than it saves); on a GPU
    one per spare core, at most 8 and at most one per four steps of an epoch of ``n_fit`` cases."""
    n = cfg.train.num_workers
    if n != "auto":
        return int(n)
    if device is None or device.type == "cpu":
        return 0
    steps = -(-n_fit // cfg.train.batch_size)
    return max(0, min(8, cores() - 1, steps // STEPS_PER_WORKER))


def loader_kind(cfg: PipelineConfig, device: torch.device, n_cases: int) -> str:
    """``standard`` or ``device`` for ``train.loader`` (``auto`` resolved as the module says)."""
    kind = cfg.train.loader
    if kind != "auto":
        return kind
    size = cfg.transforms.spatial_size
    if device.type != "cuda" or size is None or cfg.transforms.spatial_dims != 2 or cfg.train.cache_rate < 1:
        return "standard"
    cache_bytes = n_cases * float(np.prod(size)) * (cfg.image_channels + 1) * 4
    total = torch.cuda.get_device_properties(device).total_memory
    return "device" if cache_bytes <= DEVICE_CACHE_SHARE * total else "standard"


def make_loaders(
    cfg: PipelineConfig,
    fit: list[Case],
    val: list[Case],
    seed: int,
    dist: DistInfo | None = None,
    device: torch.device | None = None,
) -> tuple[Any, Any | None]:
    """Cached training (augmented) and early-stopping (not augmented) loaders on the model grid.

    Args:
        cfg: the resolved configuration.
        fit: the cases trained on.
        val: the early-stopping cases; empty with ``train.val_fraction: 0``.
        seed: seeds the augmentation and the shuffling.
        dist: the torchrun process group; each rank then takes its share of every batch.
        device: where training runs (decides ``train.loader: auto``); default the CPU.

    Returns:
        (training loader, early-stopping loader or None).
    """
    from monai.data import CacheDataset, DataLoader, ThreadDataLoader

    def items(cases: list[Case]) -> list[dict[str, Any]]:
        return [c.item() for c in cases]

    device = device or torch.device("cpu")
    distributed = dist is not None and dist.enabled
    kind = "standard" if distributed else loader_kind(cfg, device, len(fit) + len(val))
    on_device = device if kind == "device" else None
    workers = 0 if kind == "device" else worker_count(cfg, len(fit), device)
    cache = cfg.train.cache_rate
    chain = train_transforms(cfg.data, cfg.transforms, on_device)
    chain.set_random_state(seed=seed)
    # the chain's random part starts from a copy of its own (Untracked): no deep copy of the cache
    train_ds = CacheDataset(
        items(fit), chain, cache_rate=cache, num_workers=workers or None, progress=False, copy_cache=False
    )
    generator = torch.Generator().manual_seed(seed)
    pin = kind == "standard" and device.type == "cuda"
    loader: Any = ThreadDataLoader if kind == "device" else DataLoader
    log.info("training loader: %s, %d worker process(es)", kind, workers)
    shards = dist if dist is not None and distributed else None
    train_loader = _train_loader(train_ds, loader, cfg.train.batch_size, workers, generator, pin, shards)
    if not val:
        return train_loader, None
    val_ds = CacheDataset(
        items(val), eval_transforms(cfg.data, cfg.transforms, on_device), cache_rate=cache, progress=False
    )
    # whole images on a resampled grid differ in size, so they are validated one at a time
    val_batch = cfg.train.batch_size if cfg.transforms.spatial_size is not None else 1
    val_loader = loader(val_ds, batch_size=val_batch, shuffle=False, num_workers=0, pin_memory=pin)
    return train_loader, val_loader


def _train_loader(
    dataset: Any,
    loader: Any,
    batch: int,
    workers: int,
    generator: torch.Generator,
    pin: bool,
    dist: DistInfo | None,
) -> Any:
    """The shuffled training loader: ``loader`` (threads for a device cache, processes otherwise),
    or with ``dist`` each torchrun rank's share of every batch."""
    from monai.data import DataLoader

    if dist is None:
        return loader(
            dataset, batch_size=batch, shuffle=True, num_workers=workers, generator=generator, pin_memory=pin
        )
    sampler = ShardedBatchSampler(len(dataset), batch, dist, generator)
    log.info("rank %d of %d: %d cases per step", dist.rank, dist.world, local_batch_size(batch, dist))
    return DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, generator=generator, pin_memory=pin
    )
