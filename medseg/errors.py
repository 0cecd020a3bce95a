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
