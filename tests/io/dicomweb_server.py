"""Misbehaving DICOMweb servers for tests, on 127.0.0.1 and a free port, each in a thread of the
test process that stops (its sockets closed, the thread joined) when the ``with`` block ends."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, so no one else takes it, but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
