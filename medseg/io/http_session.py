"""HTTP with a deadline for the whole answer: a ``requests`` session for services that may hang.

A socket timeout bounds each read, not the answer: a server that sends one byte every few seconds
keeps every read short and the request alive for ever. Here every request has a deadline for all of
it (connecting, sending, the headers and the whole body, retries included), kept by a watchdog
timer that shuts the sockets of the request's connections when the deadline passes, so a blocked
read returns at once; the request then raises :class:`AnswerTimeout`. The body is always read
inside the request (never streamed out of it), so no byte arrives after the deadline. The watchdog
is cancelled and joined when the request ends: no thread outlives it.

A refused connection is not retried (nothing listens: a retry finds the same), nor is a 502, 503 or
504 retried after a server's ``Retry-After`` (which could ask for hours); other failures are
retried ``retries`` times with a short backoff, all within the same deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from medseg.errors import exception_chain

_ACTIVE = threading.local()  # the deadline of the request this thread is making


class AnswerTimeout(requests.exceptions.Timeout):
    """The whole answer did not arrive within the deadline."""


class Deadline:
    """A deadline ``seconds`` from entering; the connections :meth:`watch` is given are shut when it
    passes. Used as a context manager around one request, in the thread that makes it.

    Example:
        >>> with Deadline(5.0) as deadline:
        ...     pass
        >>> deadline.expired, deadline._timer.is_alive()
        (False, False)
    """

    def __init__(self, seconds: float) -> None:
        self.seconds, self.expired = seconds, False
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self.started = time.monotonic()
        _ACTIVE.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.deadline = None
        self._timer.cancel()
        self._timer.join()

    def watch(self, connection: Any) -> None:
        """Shut ``connection`` (a socket, or a connection holding one) when the deadline passes,
        at once if it has passed."""
        with self._lock:
            self._connections.append(connection)
            expired = self.expired
        if expired:
            _shut(connection)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)


def _shut(connection: Any) -> None:
    """Shut a socket (or a connection's) for reading and writing: a read blocked on it returns."""
    sock = connection if isinstance(connection, socket.socket) else getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # not connected yet, or closed already
            sock.shutdown(socket.SHUT_RDWR)


def _watched(cls: type) -> type:
    """``cls`` (a urllib3 connection class) whose connections report to the active deadline."""

    class Watched(cls):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # connected, before any TLS handshake
            _watch(sock)
            return sock

        def request(self, *args: Any, **kwargs: Any) -> None:
            _watch(self)
            super().request(*args, **kwargs)

    return Watched


def _watch(connection: Any) -> None:
    deadline = getattr(_ACTIVE, "deadline", None)
    if deadline is not None:
        deadline.watch(connection)


def _expired() -> bool:
    deadline = getattr(_ACTIVE, "deadline", None)
    return deadline is not None and deadline.expired


class _Pool(HTTPConnectionPool):
    ConnectionCls = _watched(HTTPConnection)


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _watched(HTTPSConnection)


POOLS = {"http": _Pool, "https": _TlsPool}


class _Adapter(HTTPAdapter):
    """An adapter whose connections (direct, or through an HTTP proxy) report to the deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = POOLS
        return manager


def refused(err: BaseException) -> bool:
    """Whether ``err`` comes from a refused connection (nothing listens at the address)."""
    return any(isinstance(e, ConnectionRefusedError) for e in causes(err))


def causes(err: BaseException) -> list[BaseException]:
    """``err``, its causes and contexts, and the errors urllib3 keeps as a ``reason``."""
    seen: list[BaseException] = []
    todo = [err]
    while todo and len(seen) < 50:
        for e in exception_chain(todo.pop()):
            if all(e is not s for s in seen):
                seen.append(e)
                todo += [x for x in (getattr(e, "reason", None), *e.args) if isinstance(x, BaseException)]
    return seen


class _Retry(Retry):
    """urllib3's retries, but a refused connection fails at once, and nothing is retried once the
    deadline has passed."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> _Retry:
        if (error is not None and refused(error)) or _expired():
            raise MaxRetryError(_pool, url or "", error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


class DeadlineSession(requests.Session):
    """A session whose every request must be answered whole within ``timeout`` seconds.

    Args:
        timeout: seconds for a request's whole answer, retries included; it wins over any
            ``timeout`` a caller passes (dicomweb-client passes its own 20 s).
        retries: further attempts of a request that fails to connect or to be read, or gets a
            502, 503 or 504.
    """

    def __init__(self, timeout: float, retries: int) -> None:
        super().__init__()
        self.timeout = timeout
        retry = _Retry(
            total=retries,
            connect=retries,
            read=retries,
            backoff_factor=0.2,
            backoff_max=2.0,
            status_forcelist=(502, 503, 504),
            allowed_methods=None,
            raise_on_status=False,
            respect_retry_after_header=False,
        )
        adapter = _Adapter(max_retries=retry)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """A request whose whole answer is read within the deadline, or :class:`AnswerTimeout`."""
        kwargs["timeout"] = (self.timeout, self.timeout)
        kwargs["stream"] = False  # the body is read here, under the deadline
        with Deadline(self.timeout) as deadline:
            try:
                return super().request(method, url, *args, **kwargs)
            except requests.exceptions.RequestException as err:
                if deadline.expired or isinstance(err, requests.exceptions.Timeout):
                    raise AnswerTimeout(f"no complete answer within {self.timeout:g} s") from err
                raise
