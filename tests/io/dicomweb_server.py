"""Misbehaving DICOMweb servers for tests, on 127.0.0.1 and a free port, each in threads of the
test process that stop (sockets shut and closed, threads joined) when the ``with`` block ends.

- ``silent``: accepts a connection, reads the request and never answers.
- ``trickle``: answers the headers at once, then the body one byte every ``interval`` seconds.
- ``trickle_headers``: sends even the status line and headers one byte every ``interval`` seconds.
- ``hangup``: reads the request and closes the connection without a word.

:func:`refusing_port` gives a port where nothing listens.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

THREAD_PREFIX = "fake-dicomweb"
HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\nContent-Length: 100000\r\n"
    b"Connection: keep-alive\r\n\r\n"
)


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, so no one else takes it, but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class FakeDicomweb:
    """A DICOMweb server that misbehaves as ``mode`` says; ``requests`` counts the requests read.

    Example:
        >>> with FakeDicomweb("silent") as server:
        ...     server.url.startswith("dicomweb+http://127.0.0.1:")
        True
    """

    def __init__(self, mode: str, interval: float = 1.0) -> None:
        if mode not in ("silent", "trickle", "trickle_headers", "hangup"):
            raise ValueError(mode)
        self.mode, self.interval, self.requests = mode, interval, 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.url = f"dicomweb+http://127.0.0.1:{self.port}/dicom-web"
        self.stopping = threading.Event()
        self.clients: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._serve, name=f"{THREAD_PREFIX}-accept", daemon=True)]

    def __enter__(self) -> FakeDicomweb:
        self.threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for client in list(self.clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        for thread in list(self.threads):
            thread.join(timeout=10)
        self.listener.close()
        for client in self.clients:
            client.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.clients.append(client)
            name = f"{THREAD_PREFIX}-{len(self.clients)}"
            thread = threading.Thread(target=self._answer, args=(client,), name=name, daemon=True)
            self.threads.append(thread)
            thread.start()

    def _answer(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(65536)
                if not chunk:
                    return
                request += chunk
            self.requests += 1
            if self.mode == "hangup":
                client.shutdown(socket.SHUT_RDWR)
                return
            if self.mode == "silent":
                self.stopping.wait()
                return
            if self.mode == "trickle":
                client.sendall(HEADERS)
            body = HEADERS if self.mode == "trickle_headers" else b"[" + b" " * 99_999
            for i in range(len(body)):
                if self.stopping.wait(self.interval if i else 0):
                    return
                client.sendall(body[i : i + 1])
