"""The stages of ``medseg predict`` overlapped: on a GPU, reading in worker processes, inference on
the device, restoring and writing in a background thread; on the CPU, whole inputs in processes
that share the cores (:mod:`medseg.infer.processes`).

On a GPU, worker processes (a ``torch`` ``DataLoader``, ``--workers``) read and prepare the next
inputs while the device segments the current one; a writer thread puts each result back on its
source grid and writes its files while the device goes on. At most two inputs per worker wait
decoded and two wait to be written, so memory stays bounded whatever the batch size. Results come
back in input order; an input that fails at any stage comes back with its reason. The reading
processes die with this one, even when it is killed with ``kill -9``."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from medseg.infer.bundle import ModelBundle
from medseg.infer.discover import InputItem
from medseg.infer.segmenter import Prepared, Preparer, Segmenter
from medseg.infer.steps import Done, finish, infer
from medseg.io.dicom_seg import Segments

MAX_WRITING = 2  # results waiting for the writer thread


class _Inputs(torch.utils.data.Dataset):
    def __init__(self, items: list[InputItem], preparer: Preparer) -> None:
        self.items, self.preparer = items, preparer

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prepared:
        return self.preparer(self.items[index])


def _as_is(sample: Any) -> Any:
    return sample


def prepared(items: list[InputItem], preparer: Preparer, workers: int) -> Iterator[Prepared]:
    """``items`` read and prepared, in order; by ``workers`` processes (0: in this one), which die
    with this process (:func:`~medseg.infer.processes.die_with_parent`)."""
    loader = torch.utils.data.DataLoader(
        _Inputs(items, preparer),
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_is,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_WithParent(os.getpid()) if workers else None,
    )
    return iter(loader)


class _WithParent:
    """A reading process's start: it dies with the process that started it (picklable, so a
    ``spawn`` start works as a ``fork`` does)."""

    def __init__(self, parent: int) -> None:
        self.parent = parent

    def __call__(self, worker_id: int) -> None:
        from medseg.infer.processes import die_with_parent

        die_with_parent(self.parent)


def segment_all(
    bundle: ModelBundle,
    segments: Segments,
    items: list[InputItem],
    device: torch.device,
    out_dir: Path,
    workers: int,
    on_done: Callable[[Prepared, dict[str, str], str], None],
    on_progress: Callable[[Prepared, float], None] | None = None,
) -> None:
    """Segment and write ``items``, calling ``on_done`` (in this thread, in input order) as each
    finishes or fails.

    Args:
        bundle: the study's configuration and fold checkpoints.
        segments: what each DICOM SEG says of its segments and the algorithm.
        items: the inputs to segment.
        device: where the models run.
        out_dir: the output folder.
        workers: on a GPU, reading processes (0: read in this process, between inferences); on the
            CPU, processes that each read, segment and write whole inputs
            (:mod:`medseg.infer.processes`; 0, or fewer inputs than that: all in this process).
        on_done: receives the input (its ``seconds`` per stage and ``error``), the files written
            and a note on what was not written.
        on_progress: receives the input being segmented and the fraction of its sliding windows done.
    """
    if not items:
        return
    if device.type == "cpu":
        if workers and len(items) >= max(2, workers):  # whole inputs in processes, one per core
            from medseg.infer.processes import segmented_in_processes

            for done in segmented_in_processes(bundle, segments, items, out_dir, workers):
                on_done(*done)
            return
        workers = 0  # fewer inputs than processes would leave cores idle: here, with every core
    inputs = prepared(items, Preparer(bundle.cfg), workers)  # workers start before CUDA is used
    segmenter = Segmenter(bundle, device, segments)
    pending: deque[Future[Done]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="medseg-write") as writer:
        for prep in inputs:
            step = None if on_progress is None else lambda f, p=prep: on_progress(p, f)
            result = infer(segmenter, prep, step)
            pending.append(writer.submit(finish, segmenter, prep, result, out_dir))
            while pending and (len(pending) > MAX_WRITING or pending[0].done()):
                on_done(*pending.popleft().result())
        while pending:
            on_done(*pending.popleft().result())
