"""Advisory file locks (``flock``) that say who holds them.

A lock lives as long as its process holds the file open: a killed process releases it at once, so
a stale lock never blocks a resumed run. The file records the holder's process id, host and start
time for the message a refused process prints. On network file systems, ``flock`` works where the
server supports locks (NFSv4, most cluster file systems).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medseg.errors import MedsegError


class Busy(MedsegError):
    """Another process holds the lock."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another medseg process"
    except OSError:
        return "another medseg process"


@contextmanager
def hold(path: str | Path, what: str, shared: bool = False, wait: bool = False) -> Iterator[None]:
    """Hold the lock of ``path`` (created if absent) while the block runs.

    Args:
        path: the lock file.
        what: what the lock guards, for the message (``runs/demo``, ``fold 2 of runs/demo``).
        shared: take it shared (several holders) rather than exclusive.
        wait: wait for it rather than refuse at once.

    Raises:
        Busy: ``wait`` is false and another process holds the lock (named in the message).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(
                f"{what} is in use by {_holder(path)}; wait for it to finish, or give this run "
                "another output_dir"
            ) from None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)  # shared holders: the latest one is named
        os.pwrite(fd, f"medseg process {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
