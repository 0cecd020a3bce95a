"""User-facing errors: each names the file, key or case at fault and what to do about it."""

from __future__ import annotations


class MedsegError(Exception):
    """An error the CLI prints as one clean message, without a traceback."""


class ConfigError(MedsegError):
    """A pipeline file, fragment or override that does not validate."""


class DataError(MedsegError):
    """Input data that cannot be used as it is (missing folder, bad pair, unreadable file)."""
