"""Data-parallel training under ``torchrun``: one process per GPU (NCCL) or per CPU worker (gloo).

    torchrun --nproc_per_node 2 -m medseg run pipelines/isic.yaml

Rank 0 does everything that writes (ingest, splits, checkpoints, evaluation, MLflow, report); every
rank trains. Each global batch of ``train.batch_size`` cases is drawn in the order a single process
would draw it (same seeded generator) and split evenly between the ranks, so the averaged gradient
equals the single-process one. Validation runs on every rank over all validation cases, so the
early-stopping decisions agree without communication. Nodes join with torchrun's usual
``--nnodes``/``--rdzv-endpoint`` options; separate folds can also run as separate jobs with
``medseg run ... --fold K``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from medseg.errors import MedsegError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun group (one process: rank 0 of 1).

    Attributes:
        rank: the global rank.
        world: the number of processes.
        local_rank: the rank on this machine, which picks the GPU.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_setting: str = "auto") -> DistInfo:
    """Join the process group that torchrun describes in the environment; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_setting != "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    return DistInfo(rank, world, local)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def all_reduce_sum(total: float, count: int, device: torch.device) -> tuple[float, int]:
    """Sums of a running total and count over every rank."""
    import torch.distributed as dist

    t = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]), int(t[1])


def local_batch_size(batch_size: int, info: DistInfo) -> int:
    """This rank's share of ``train.batch_size``; MedsegError when it does not split evenly."""
    if batch_size % info.world:
        raise MedsegError(
            f"train.batch_size: {batch_size} does not split evenly over {info.world} processes; "
            f"use a multiple of {info.world}"
        )
    return batch_size // info.world


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of this rank's share of each global batch, in the single-process shuffle order.

    Args:
        n: the number of training items.
        batch_size: the global batch size.
        info: this process's place in the group.
        generator: the shuffling generator, seeded alike on every rank.
    """

    def __init__(self, n: int, batch_size: int, info: DistInfo, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.info, self.generator = n, batch_size, info, generator

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        local = self.batch_size // self.info.world
        for start in range(0, self.n, self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) < self.batch_size:  # the last, short batch: split as evenly as possible
                share = math.ceil(len(batch) / self.info.world)
                mine = batch[self.info.rank * share : (self.info.rank + 1) * share]
                yield mine or batch[-1:]
            else:
                yield batch[self.info.rank * local : (self.info.rank + 1) * local]

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)
