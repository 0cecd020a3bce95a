"""``medseg predict`` on a CPU: whole inputs in worker processes of one thread each.

On a CPU the cores are the device, and one process that segments with every core (intra-op threads)
wastes part of them: a 3D UNet over 96 x 96 x 16 windows took 3.9 CPU-seconds on 2 threads where
one thread took 3.2, and reading or writing beside it stalls both threads at each barrier. So here
``--workers N`` processes each take whole inputs, one after another: read, prepare, segment, put
back on the source grid and write. The models are loaded once, before the processes are forked (a
fresh interpreter takes seconds to import torch and MONAI), and each process runs one thread: a
forked process cannot safely start OpenMP threads once its parent has used them. Results come
back in input order, at most two per process wait, and an input that fails at any stage, or whose
process dies, comes back with its reason. A process dies with its parent (``kill -9`` included), so
no worker writes outputs that no manifest will record."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

from medseg.infer.bundle import ModelBundle
from medseg.infer.discover import InputItem
from medseg.infer.segmenter import Prepared
from medseg.infer.steps import Done, finish, infer
from medseg.io.atomic import remove_temporaries
from medseg.io.dicom_seg import Segments

AHEAD = 2  # inputs handed to each process before the first comes back
_worker: dict[str, Any] = {}  # the models and transforms, set before the processes are forked


def _one_thread(parent: int, out_dir: Any) -> None:
    """A worker process starts: one thread (its models came with the fork); Ctrl-C is for the
    parent, which stops the workers itself; ``terminate`` ends the input under way cleanly (its
    temporary files removed); the parent's death ends it too (:func:`die_with_parent`)."""
    import signal
    import sys

    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    die_with_parent(parent, out_dir)


PARENT_DIED = 1  # prctl's PR_SET_PDEATHSIG


def die_with_parent(parent: int, out_dir: Any = None) -> None:
    """End this worker process when ``parent`` dies, even by ``kill -9``, before it writes again.

    On Linux the kernel sends SIGHUP when the parent goes (``prctl(PR_SET_PDEATHSIG)``); the
    handler removes this process's temporary files in ``out_dir`` (``.NAME.PID.tmp``, see
    :mod:`medseg.io.atomic`) and exits at once, so no output appears that no manifest records.
    Elsewhere, or where the call fails, nothing changes (the pool's own end still stops idle workers).
    A parent already gone before this call ends the process now.

    Args:
        parent: the process id of the process that forked this one.
        out_dir: the output folder this process writes into, or None (a reading process).
    """
    import ctypes
    import signal
    import sys

    def orphaned(*_: Any) -> None:
        if os.getppid() == parent:  # a hangup of the terminal, or the forking thread ended
            return
        if out_dir is not None:
            remove_temporaries(out_dir, os.getpid())
        os._exit(1)

    if not sys.platform.startswith("linux"):
        return
    signal.signal(signal.SIGHUP, orphaned)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PARENT_DIED, int(signal.SIGHUP), 0, 0, 0)
    except (OSError, AttributeError):
        return
    orphaned()  # the parent died between the fork and the call above


# what the stages import on first use: imported once before the fork, not again in every process
PRELOAD = ("highdicom", "nibabel", "scipy.ndimage", "openjpeg", "libjpeg", "jpeg_ls")


def _preload() -> None:
    import importlib
    from contextlib import suppress

    for name in PRELOAD:
        with suppress(ImportError):  # an optional decoder that is not installed
            importlib.import_module(name)


def _one(item: InputItem, out_dir: Any) -> Done:
    """Read, segment and write one input (in a worker process)."""
    prep = _worker["preparer"](item)
    result = infer(_worker["segmenter"], prep, None)
    done = finish(_worker["segmenter"], prep, result, out_dir)
    done[0].meta = {}  # what the writers needed of the source stays here
    return done


def _died(item: InputItem, err: BaseException) -> Done:
    """The row of an input that did not come back from its process."""
    if isinstance(err, BrokenProcessPool):
        reason = (
            "a worker process stopped while this input was being segmented (out of memory?); "
            "run the same command again"
        )
    else:
        reason = f"{type(err).__name__}: {err}"
    return Prepared(item, error=reason), {}, ""


def segmented_in_processes(
    bundle: ModelBundle,
    segments: Segments,
    items: list[InputItem],
    out_dir: Any,
    workers: int,
) -> Iterator[Done]:
    """Each of ``items`` read, segmented on the CPU and written by ``workers`` processes; yielded in
    input order as each finishes or fails. When a process dies (killed, out of memory), the inputs
    then under way fail with that reason and the rest go on in new processes."""
    import torch

    from medseg.infer.segmenter import Preparer, Segmenter

    # loaded here, once: a bad checkpoint fails the batch with its own error, and every process
    # forked from this one has the models without reading them again
    _worker["preparer"] = Preparer(bundle.cfg)
    _worker["segmenter"] = Segmenter(bundle, torch.device("cpu"), segments)
    _preload()
    todo = deque(items)
    try:
        while todo:
            yield from _until_broken(todo, out_dir, workers)
    finally:
        _worker.clear()


@contextmanager
def _stopped_on_interrupt(pool: ProcessPoolExecutor) -> Iterator[None]:
    """Ctrl-C (or any error here): nothing more starts and the inputs under way stop now, rather
    than the pool's own exit waiting for every one of them."""
    try:
        yield
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown forgets them
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise


def _until_broken(todo: deque[InputItem], out_dir: Any, workers: int) -> Iterator[Done]:
    """Inputs taken from ``todo`` through one pool of processes, until it is empty or a process dies."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    pending: deque[tuple[InputItem, Future[Done]]] = deque()
    broken, pids = False, set[int]()
    start = (os.getpid(), out_dir)
    with ProcessPoolExecutor(workers, fork, _one_thread, start) as pool, _stopped_on_interrupt(pool):
        while pending or (todo and not broken):
            while todo and not broken and len(pending) < AHEAD * workers:
                try:
                    pending.append((todo[0], pool.submit(_one, todo[0], out_dir)))
                    todo.popleft()
                except BrokenProcessPool:  # died before its result was asked for
                    broken = True
            pids |= set(getattr(pool, "_processes", None) or {})
            if not pending:
                break
            item, future = pending.popleft()
            try:
                yield future.result()
            except Exception as err:  # BrokenProcessPool: every input under way fails with it
                broken = broken or isinstance(err, BrokenProcessPool)
                yield _died(item, err)
    for pid in pids if broken else ():  # all ended now; one killed while writing left its file
        remove_temporaries(out_dir, pid)
