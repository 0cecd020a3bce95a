"""User-facing errors: each names the file, key or case at fault and what to do about it."""

from __future__ import annotations

import re


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


CREDENTIALS_IN_URI = re.compile(r"(\w[\w+.-]*://)[^/@\s]*@")


def mask_credentials(text: str) -> str:
    """``text`` with the user and password of every URI in it masked.

    Example:
        >>> mask_credentials("postgresql://ann:s3cret@db:5432/mlflow")
        'postgresql://***@db:5432/mlflow'
    """
    return CREDENTIALS_IN_URI.sub(r"\1***@", text)
