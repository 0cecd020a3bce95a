"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medseg.errors import MedsegError
from medseg.io.atomic import atomic_path


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` (state dicts and plain values) to ``path`` via a temporary file; when writing
    fails (a full disk), the previous checkpoint is left as it was and the error says so."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as err:
        raise MedsegError(
            f"{path}: cannot write the checkpoint ({err.strerror or err}); the previous one is kept. "
            "Free some disk space and run the same command again to resume"
        ) from None


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's state dict, loaded on the CPU with ``weights_only=True``.

    Args:
        path: the ``.pt`` file.
        mmap: map the tensors instead of reading them (to read the plain values cheaply).

    Returns:
        The saved dictionary (``model`` and, for ``last.pt``, the training state).

    Raises:
        MedsegError: the file is missing or not a medseg checkpoint.
    """
    if not Path(path).is_file():
        raise MedsegError(f"{path}: checkpoint not found; has this fold been trained?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        raise MedsegError(f"{path}: not a readable medseg checkpoint ({err})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise MedsegError(f"{path}: not a medseg checkpoint (no 'model' entry)")
    return state


def load_weights(model: torch.nn.Module, path: Path) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model``; a mismatched network is refused by name."""
    state = load_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0:3]
        raise MedsegError(
            f"{path}: the checkpoint does not fit the configured network ({' '.join(first)}); "
            "was it trained with other model settings?"
        ) from None
    return state


def trained_channels(path: Path, configured: list[str] | None) -> list[str] | None:
    """The input channels a checkpoint's network was trained on, in order.

    Args:
        path: a ``best.pt`` or ``last.pt``.
        configured: ``data.channel_names`` of the configuration it comes with.

    Returns:
        The recorded names (``configured`` for a checkpoint written before they were recorded).

    Raises:
        MedsegError: the checkpoint records other channels, or the same in another order.
    """
    state = load_checkpoint(path, mmap=True)
    if "channel_names" not in state:
        return configured
    recorded = list(state["channel_names"]) if state["channel_names"] else None
    if recorded != (list(configured) if configured else None):
        raise MedsegError(
            f"{path}: trained on the channels {recorded}, but the configuration names {configured} "
            "(data.channel_names); use the configuration the fold was trained with"
        )
    return recorded
