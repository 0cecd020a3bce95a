"""Run a command and end it, with every process it starts, when the process that started us ends.

``medseg ui`` starts the MLflow server through this guard, as the leader of a process group of its
own: the guard runs the server in that group and watches a pipe whose one writer is ``medseg ui``.
However ``medseg ui`` ends, SIGKILL included, the kernel closes the pipe; the guard then ends the
group (SIGTERM, then SIGKILL after a grace period), the server and the uvicorn process it started
included. A parent-death signal (``PR_SET_PDEATHSIG``) would reach only the direct child, and is
Linux-only.

Usage (stdlib only, so it starts fast)::

    python -m medseg.tracking.guard FD -- COMMAND [ARG ...]
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time


def watch(fd: int, cmd: list[str], grace: float = 10.0, poll: float = 0.5) -> int:
    """Run ``cmd`` until it exits, this process is asked to stop, or ``fd`` reaches its end.

    Args:
        fd: the read end of a pipe whose write end only the watched parent holds.
        cmd: the command, run in this process's group.
        grace: seconds the group has to end after SIGTERM before SIGKILL.
        poll: seconds between checks of the command.

    Returns:
        The command's exit code when it ended by itself.
    """
    child = subprocess.Popen(cmd)
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    while not stopping:
        code = child.poll()
        if code is not None:
            return code
        try:
            ready, _, _ = select.select([fd], [], [], poll)
        except InterruptedError:  # pragma: no cover - a signal during select (Python retries)
            continue
        if ready and not os.read(fd, 1):
            break  # end of file: the parent is gone
    end_group(child, grace)
    return 0


def end_group(child: subprocess.Popen, grace: float) -> None:
    """SIGTERM to every process of this group but the guard, then SIGKILL to whatever is left."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # the server's own workers end after it
    os.killpg(0, signal.SIGKILL)  # the guard too: nothing of the group is left


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m medseg.tracking.guard FD -- COMMAND [ARG ...]", file=sys.stderr)
        return 2
    return watch(int(argv[0]), argv[2:])


if __name__ == "__main__":  # pragma: no cover - run as a process by medseg.tracking.ui
    sys.exit(main(sys.argv[1:]))
