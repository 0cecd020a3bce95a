"""YAML as a pipeline file may be written: safe, and without YAML 1.1's surprises.

``yaml.safe_load`` with four changes: a key given twice in one mapping is an error (YAML keeps the
last silently); an integer with a leading zero (``010``, which YAML 1.1 reads as octal 8) is an
error; only ``true``/``false`` are booleans (``yes``, ``no``, ``on``, ``off`` stay strings, which
a number field then refuses); and a document that expands to more than :data:`MAX_VALUES` values
or nests deeper than :data:`MAX_DEPTH` (aliases of aliases, "billion laughs") is refused before
anything formats it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

MAX_VALUES = 100_000  # values of a document after aliases are expanded
MAX_DEPTH = 64  # nesting of mappings and lists
_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")
_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")


class YamlLimitError(ValueError):
    """A document too large or too deep once its aliases are expanded."""


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConstructorError(
                    None, None, f"key '{str(key)[:40]}' given twice in one mapping", key_node.start_mark
                )
            seen[key] = True
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if _LEADING_ZERO.fullmatch(text):
            raise ConstructorError(
                None, None, f"integer '{text}' with a leading zero (YAML reads it as octal)", node.start_mark
            )
        return int(super().construct_yaml_int(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
# booleans: only true/false (YAML 1.2); yes/no/on/off resolve as strings
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))


def load(text: str) -> Any:
    """Parse one YAML document strictly.

    Args:
        text: the document.

    Returns:
        The parsed value.

    Raises:
        yaml.YAMLError: bad syntax, a duplicate key or a leading-zero integer.
        YamlLimitError: too many values after alias expansion, or too deep.

    Example:
        >>> load("a: yes\\nb: true\\nc: 10")
        {'a': 'yes', 'b': True, 'c': 10}
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_size(data)
    return data


def check_size(data: Any) -> None:
    """Refuse a value with more than :data:`MAX_VALUES` values or :data:`MAX_DEPTH` levels,
    counting shared (aliased) parts each time they appear; stops as soon as a limit is passed."""
    budget = MAX_VALUES
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise YamlLimitError(f"more than {MAX_VALUES} values once aliases are expanded")
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
