"""Training and early-stopping loaders of a fold: cached MONAI datasets on the model grid."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medseg.chains import eval_transforms, train_transforms
from medseg.config.models import PipelineConfig
from medseg.data.datalist import Case
from medseg.train.distributed import DistInfo, ShardedBatchSampler, local_batch_size

log = logging.getLogger(__name__)


def make_loaders(
    cfg: PipelineConfig, fit: list[Case], val: list[Case], seed: int, dist: DistInfo | None = None
) -> tuple[Any, Any | None]:
    """Cached training (augmented) and early-stopping (not augmented) loaders on the model grid.

    Args:
        cfg: the resolved configuration.
        fit: the cases trained on.
        val: the early-stopping cases; empty with ``train.val_fraction: 0``.
        seed: seeds the augmentation and the shuffling.
        dist: the torchrun process group; each rank then takes its share of every batch.

    Returns:
        (training loader, early-stopping loader or None).
    """
    from monai.data import CacheDataset, DataLoader

    def items(cases: list[Case]) -> list[dict[str, str]]:  # only what collates
        return [{"id": c["id"], "image": c["image"], "label": c["label"]} for c in cases]

    chain = train_transforms(cfg)
    chain.set_random_state(seed=seed)
    workers = cfg.train.num_workers
    cache = cfg.train.cache_rate
    train_ds = CacheDataset(items(fit), chain, cache_rate=cache, num_workers=workers or None, progress=False)
    generator = torch.Generator().manual_seed(seed)
    pin = torch.cuda.is_available() and cfg.train.device != "cpu"
    if dist is not None and dist.enabled:
        local = local_batch_size(cfg.train.batch_size, dist)
        sampler = ShardedBatchSampler(len(train_ds), cfg.train.batch_size, dist, generator)
        train_loader = DataLoader(
            train_ds, batch_sampler=sampler, num_workers=workers, generator=generator, pin_memory=pin
        )
        log.info("rank %d of %d: %d cases per step", dist.rank, dist.world, local)
    else:
        train_loader = DataLoader(
            train_ds,
            batch_size=cfg.train.batch_size,
            shuffle=True,
            num_workers=workers,
            generator=generator,
            pin_memory=pin,
        )
    if not val:
        return train_loader, None
    val_ds = CacheDataset(items(val), eval_transforms(cfg), cache_rate=cache, progress=False)
    # whole images on a resampled grid differ in size, so they are validated one at a time
    val_batch = cfg.train.batch_size if cfg.transforms.spatial_size is not None else 1
    val_loader = DataLoader(val_ds, batch_size=val_batch, shuffle=False, num_workers=workers, pin_memory=pin)
    return train_loader, val_loader
