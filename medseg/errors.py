"""User-facing errors: each names the file, key or case at fault and what to do about it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager


class MedsegError(Exception):
    """An error the CLI prints as one clean message, without a traceback."""


class ConfigError(MedsegError):
    """A pipeline file, fragment or override that does not validate."""


class DataError(MedsegError):
    """Input data that cannot be used as it is (missing folder, bad pair, unreadable file)."""


def exception_chain(err: BaseException, limit: int = 20) -> list[BaseException]:
    """``err`` and the errors behind it (``__cause__``, else ``__context__``), outermost first."""
    chain = [err]
    while len(chain) < limit and (nxt := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(nxt)
    return chain


def medseg_cause(err: BaseException) -> MedsegError | None:
    """The MedsegError in the chain of ``err`` (MONAI wraps errors raised inside transforms)."""
    return next((e for e in exception_chain(err) if isinstance(e, MedsegError)), None)


# A URI's user information runs from "scheme://" to the LAST "@" before the URI ends (whitespace
# ends it): so a password holding "/", "@", ":" or "%40" is masked whole, whether or not the URI
# parses. An "@" later in the same word (a path, a query) is masked too: masking more is safe.
CREDENTIALS_IN_URI = re.compile(r"([A-Za-z][\w+.-]*://)\S*@")
_SECRETS: set[str] = set()
MIN_SECRET = 4  # shorter values would mask ordinary words; in a URI they are masked by position


def hide(secret: str | None) -> None:
    """Mask ``secret`` (and its percent-decoded form) wherever :func:`mask_credentials` looks
    from now on in this process: a password that cannot be found by its position, such as one
    with a space, or one read from a file."""
    from urllib.parse import unquote

    for value in {secret or "", unquote(secret or "")}:
        if len(value) >= MIN_SECRET:
            _SECRETS.add(value)


def mask_credentials(text: str) -> str:
    """``text`` with the user and password of every URI in it masked, and every secret given to
    :func:`hide`.

    Example:
        >>> mask_credentials("postgresql://ann:s3cret@db:5432/mlflow")
        'postgresql://***@db:5432/mlflow'
        >>> mask_credentials("error: dicomweb+http://ann:a/b@c@pacs:8042/dicom-web: refused")
        'error: dicomweb+http://***@pacs:8042/dicom-web: refused'
    """
    text = CREDENTIALS_IN_URI.sub(r"\1***@", text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _failed_allocation(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
    )


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err``, or an error behind it, is a failed allocation: Python's and numpy's
    ``MemoryError``, torch's ``can't allocate memory`` on the CPU, or CUDA's ``out of memory``.

    Example:
        >>> out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."))
        True
        >>> out_of_memory(ValueError("bad value"))
        False
    """
    return any(_failed_allocation(e) for e in exception_chain(err))


# what to do when one case or input does not fit in memory
MEMORY_ADVICE = (
    "free memory (other jobs on this machine), run where there is more, or leave such large images "
    "out with a lower data.max_image_pixels (pictures) or a coarser transforms.spacing (volumes)"
)


@contextmanager
def out_of_memory_named(what: str, advice: str = MEMORY_ADVICE) -> Iterator[None]:
    """Turn running out of memory in the block into a :class:`MedsegError` naming ``what`` (a case,
    an input) and ``advice``; every other error goes on as it is.

    Example:
        >>> try:
        ...     with out_of_memory_named("case BIG"):
        ...         raise MemoryError("Unable to allocate 366. MiB")
        ... except MedsegError as err:
        ...     str(err)[:49]
        'case BIG: out of memory (Unable to allocate 366. '
    """
    try:
        yield
    except Exception as err:
        if not out_of_memory(err):
            raise
        inner = [e for e in exception_chain(err) if _failed_allocation(e)][-1]
        detail = str(inner).strip() or type(inner).__name__
        raise MedsegError(f"{what}: out of memory ({detail[:200]}); {advice}") from err
