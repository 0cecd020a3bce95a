"""The stages of ``medseg predict`` overlapped: reading in worker processes, inference on the
device, restoring and writing in a background thread.

Worker processes (a ``torch`` ``DataLoader``, ``--workers``) read and prepare the next inputs
while the device segments the current one; a writer thread puts each result back on its source
grid and writes its files while the device goes on. When the device is the CPU, the readers run at
a lower priority (``nice`` 10), so they take the cycles inference leaves idle rather than slow it
down (on 2 cores about 5% faster than reading in turn). At most two inputs per worker wait decoded
and two wait to be written, so memory stays bounded whatever the batch size. Results come back in
input order; an input that fails at any stage comes back with its reason.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from medseg.infer.bundle import ModelBundle
from medseg.infer.discover import InputItem
from medseg.infer.findings import findings
from medseg.infer.outputs import write_outputs
from medseg.infer.segmenter import Prepared, Preparer, Segmenter, plain
from medseg.io.dicom_seg import Segments

MAX_WRITING = 2  # results waiting for the writer thread
Done = tuple[Prepared, dict[str, str], str]  # (input, files written by kind, note)


class _Inputs(torch.utils.data.Dataset):
    def __init__(self, items: list[InputItem], preparer: Preparer) -> None:
        self.items, self.preparer = items, preparer

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prepared:
        return self.preparer(self.items[index])


def _as_is(sample: Any) -> Any:
    return sample


def _low_priority(worker_id: int) -> None:
    """Readers yield the cores to inference: they run on what the device's threads leave idle."""
    import os

    os.nice(10)


def prepared(
    items: list[InputItem], preparer: Preparer, workers: int, nice: bool = False
) -> Iterator[Prepared]:
    """``items`` read and prepared, in order; by ``workers`` processes (0: in this one), at a lower
    priority when ``nice``."""
    loader = torch.utils.data.DataLoader(
        _Inputs(items, preparer),
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_is,
        prefetch_factor=2 if workers else None,
        worker_init_fn=_low_priority if nice else None,
    )
    return iter(loader)


def _finish(segmenter: Segmenter, prep: Prepared, result: Any, out_dir: Path) -> Done:
    """Restore and write one segmented input (in the writer thread)."""
    written: dict[str, str] = {}
    note = ""
    if prep.error is None:
        t0 = time.perf_counter()
        try:
            label, source = segmenter.restore(prep, result)
            cfg, segments = segmenter.cfg, segmenter.segments
            written, note = write_outputs(prep.item, label, source, cfg, out_dir, segments)
            prep.findings = findings(label, source.get("affine"), cfg.class_names, prep.item.kind)
        except Exception as err:  # one bad input never stops the batch
            prep.error = plain(err)
        prep.seconds["write"] = time.perf_counter() - t0
    prep.image = prep.picture = None  # free the input's arrays once written
    return prep, written, note


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
        workers: reading processes (0: read in this process, between inferences).
        on_done: receives the input (its ``seconds`` per stage and ``error``), the files written
            and a note on what was not written.
        on_progress: receives the input being segmented and the fraction of its sliding windows done.
    """
    if not items:
        return
    # workers start before CUDA is used; beside inference on the CPU they take only idle cycles
    inputs = prepared(items, Preparer(bundle.cfg), workers, nice=device.type == "cpu")
    segmenter = Segmenter(bundle, device, segments)
    pending: deque[Future[Done]] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="medseg-write") as writer:
        for prep in inputs:
            result = None
            if prep.error is None:
                t0 = time.perf_counter()
                try:
                    step = None if on_progress is None else lambda f, p=prep: on_progress(p, f)
                    result = segmenter.infer(prep, step)
                except Exception as err:
                    prep.error = plain(err)
                prep.seconds["infer"] = time.perf_counter() - t0
            pending.append(writer.submit(_finish, segmenter, prep, result, out_dir))
            while pending and (len(pending) > MAX_WRITING or pending[0].done()):
                on_done(*pending.popleft().result())
        while pending:
            on_done(*pending.popleft().result())
