"""Advisory file locks (``flock``) that say who holds them.

A lock lives as long as its process holds the file open: a killed process releases it at once, so
a stale lock never blocks a resumed run. A command removes on its way out the lock files no process
holds (:func:`remove_free`), so a failed command leaves no ``.locks`` folder behind. The file
records the holder's process id, host and start time for the message a refused process prints. On
network file systems, ``flock`` works where the server supports locks (NFSv4, most cluster file
systems).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
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

    A lock file may be removed by :func:`remove_free` between this process opening it and locking
    it; the lock is then taken again on the file now at ``path``, so two processes never hold two
    files of one name.

    Args:
        path: the lock file.
        what: what the lock guards, for the message (``runs/demo``, ``fold 2 of runs/demo``).
        shared: take it shared (several holders) rather than exclusive.
        wait: wait for it rather than refuse at once.

    Raises:
        Busy: ``wait`` is false and another process holds the lock (named in the message).
    """
    path = Path(path)
    fd = _locked(path, what, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, wait)
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)  # shared holders: the latest one is named
        os.pwrite(fd, f"medseg process {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _locked(path: Path, what: str, mode: int, wait: bool) -> int:
    """An open descriptor of the file at ``path``, locked in ``mode``."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise Busy(
                f"{what} is in use by {_holder(path)}; wait for it to finish, or give this run "
                "another output_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # removed while this process waited: lock the file there now


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def remove_free(folder: Path) -> None:
    """Remove the lock files of ``folder`` that no process holds, then ``folder`` when it is empty.

    Each file is removed while locked here, so a process that opened it meanwhile finds it gone and
    locks the new file (:func:`hold`); a held lock stays, as does anything that is not a lock file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in folder.glob("*.lock"):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(fd, path):
                path.unlink()
        except OSError:  # held by a process now
            pass
        finally:
            os.close(fd)
    with suppress(OSError):
        folder.rmdir()
