"""Write a plan as a pipeline YAML with the reason for each planned value beside it."""

from __future__ import annotations

from typing import Any

import yaml


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").strip()


def to_yaml(raw: dict[str, Any], reasons: dict[str, str], header: list[str]) -> str:
    """``raw`` as block YAML two levels deep (deeper values in flow style), ``# reason`` after each
    key named in ``reasons`` (dotted), ``header`` as comment lines on top.

    Example:
        >>> print(to_yaml({"train": {"epochs": 3}}, {"train.epochs": "fits the budget"}, ["plan"]))
        # plan
        train:
          epochs: 3  # fits the budget
        <BLANKLINE>
    """
    lines = [f"# {h}" if h else "#" for h in header]

    def emit(key: str, value: Any, indent: int, path: str) -> None:
        note = f"  # {reasons[path]}" if path in reasons else ""
        pad = "  " * indent
        if isinstance(value, dict) and value and indent < 2:
            lines.append(f"{pad}{key}:{note}")
            for k, v in value.items():
                emit(k, v, indent + 1, f"{path}.{k}")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and indent < 2:
            lines.append(f"{pad}{key}:{note}")
            lines.extend(f"{pad}  - {_flow(v)}" for v in value)
        else:
            lines.append(f"{pad}{key}: {_flow(value)}{note}")

    for key, value in raw.items():
        emit(key, value, 0, key)
    return "\n".join(lines) + "\n"
