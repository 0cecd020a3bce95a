"""The real single-node Slurm of :mod:`tests.cluster.single_node` as a session fixture, skipped with
the reason where the Debian packages are absent or the tests do not run as root."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from .single_node import Slurm, single_node_slurm, unavailable


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    """A single-node Slurm, ready to take jobs (about 10 s to start)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    try:
        with single_node_slurm() as cluster:
            yield cluster
    except RuntimeError as err:
        pytest.fail(str(err))


def medseg(*args: str) -> list[str]:
    """``python -m medseg ARGS`` with this interpreter."""
    return [sys.executable, "-m", "medseg", *args]
