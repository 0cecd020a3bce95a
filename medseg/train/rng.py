"""Random-number states saved in checkpoints, so a resumed fold draws what an unbroken one would.

Covers Python's ``random``, NumPy's global state, torch (CPU and CUDA), the training loader's
shuffling generator and the ``RandomState`` of every random MONAI transform of the training chain.
Everything is stored as tensors and plain values, so checkpoints still load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def _np_state(state: tuple[Any, ...]) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip


def _np_tuple(d: dict[str, Any]) -> tuple[Any, ...]:
    keys = d["keys"].numpy().astype(np.uint32)
    return (d["name"], keys, d["pos"], d["has_gauss"], d["cached"])


def random_transforms(chain: Any) -> list[Any]:
    """Every object in the chain that holds a ``RandomState`` (``R``), nested ones included (a
    ``RandAffined`` draws through its inner ``RandAffine`` and that one's ``RandAffineGrid``), in a
    fixed order."""
    found: list[Any] = []
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 6:
            return
        seen.add(id(obj))
        if isinstance(getattr(obj, "R", None), np.random.RandomState):
            found.append(obj)
        children = list(getattr(obj, "transforms", []) or [])
        children += [v for k, v in sorted(vars(obj).items()) if k != "transforms" and _is_transform(v)]
        for child in children:
            visit(child, depth + 1)

    if chain is not None:
        visit(chain, 0)
    return found


def _is_transform(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith(("monai.", "medseg.")) and hasattr(value, "__dict__")


def capture(chain: Any = None, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a resumed fold needs, as tensors and plain values."""
    version, internal, gauss = random.getstate()
    numpy_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": _np_state(numpy_state),
        "torch": torch.get_rng_state(),
        "transforms": [_np_state(t.R.get_state()) for t in random_transforms(chain)],
    }
    if generator is not None:
        state["loader"] = generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any], chain: Any = None, generator: torch.Generator | None = None) -> None:
    """Put back the states :func:`capture` took."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    np.random.set_state(_np_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if chain is not None:
        for t, saved in zip(random_transforms(chain), state.get("transforms", []), strict=False):
            t.R.set_state(_np_tuple(saved))
    if generator is not None and "loader" in state:
        generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
