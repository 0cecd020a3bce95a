"""The classes ``medseg evaluate`` scores: a name, the value in the predictions, the value(s) in the
references.

A prediction folder written by ``medseg predict`` numbers its classes 1, 2, ... as the model does;
the references often do not (a 117-class TotalSegmentator map has the liver at 5 and the spleen at
1). So each class is a :class:`ScoredClass` and the references are renumbered into the predictions'
values before scoring; reference values no class names become background. The classes come from:

- ``--model RUN_DIR``: the run's ``config.yaml``: ``data.labels`` (``{liver: 5, kidneys: [2, 3]}``:
  classes 1, 2, ... in that order, their reference values as given) or ``data.class_names``, and the
  Surface Dice tolerance of each class (``evaluate.nsd_tolerance``); ``--classes liver,spleen`` then
  scores a subset;
- ``--classes liver=1,spleen=2``: the classes' values in the predictions, without a model;
- ``--ref-labels liver=5,spleen=1,kidneys=2+3`` or ``--ref-labels FILE``: the values of named classes
  in the references. Alone, it numbers the prediction's classes 1, 2, ... in its order, as
  ``data.labels`` does. FILE is JSON or YAML: ``{liver: 5, kidneys: [2, 3]}``, the value -> name map
  TotalSegmentator prints (``{"1": "spleen", "5": "liver"}``), or an nnU-Net ``dataset.json``
  (its ``labels``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import DataError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
RESERVED = "mean"  # the mean over classes in summaries (medseg.evaluate.casewise.CLASS_MEAN)
LabelMap = dict[str, tuple[int, ...]]  # class name -> values


@dataclass(frozen=True)
class ScoredClass:
    """One class scored by ``medseg evaluate``.

    Attributes:
        name: shown in ``metrics.csv`` and ``summary.json``.
        value: its value in the predictions.
        ref_values: its values in the references (several merge into one class).
        tolerance: its Surface Dice tolerance in mm, or None for ``--tolerance``.
    """

    name: str
    value: int
    ref_values: tuple[int, ...]
    tolerance: float | None = None


def unnamed(values: list[int]) -> list[ScoredClass]:
    """Classes for bare label values, the same in both folders, named ``label_<value>``."""
    return [ScoredClass(f"label_{v}", v, (v,)) for v in values]


def parse_label_map(text: str, option: str, values_needed: bool = True) -> LabelMap:
    """``liver=5,spleen=1,kidneys=2+3`` as a map of names to values (names alone, ``liver,spleen``,
    map to no value when ``values_needed`` is false).

    Example:
        >>> parse_label_map("liver=5, kidneys=2+3", "--ref-labels")
        {'liver': (5,), 'kidneys': (2, 3)}
    """
    out: LabelMap = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, values = (s.strip() for s in item.partition("="))
        if not values and values_needed:
            raise DataError(f"{option}: '{item}' has no value; write name=value, e.g. liver=5")
        try:
            out[_checked_name(name, option, out)] = tuple(int(v) for v in values.split("+") if v.strip())
        except ValueError:
            raise DataError(
                f"{option}: '{item}': values are whole numbers joined by '+', e.g. kidneys=2+3"
            ) from None
    if not out:
        raise DataError(f"{option}: no class given")
    return out


def read_label_map(path: Path, option: str) -> LabelMap:
    """A label map file (JSON or YAML): ``{name: value or [values]}``, ``{"value": "name"}`` as
    TotalSegmentator prints it, or an nnU-Net ``dataset.json`` (its ``labels``, background left out).

    Raises:
        DataError: the file cannot be read or holds something else.
    """
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataError(f"{option}: cannot read '{path}' as JSON or YAML ({type(err).__name__})") from None
    if isinstance(raw, Mapping) and isinstance(raw.get("labels"), Mapping):
        raw = raw["labels"]  # nnU-Net dataset.json
    if not isinstance(raw, Mapping) or not raw:
        raise DataError(f"{option}: '{path}' holds no mapping of class names to label values")
    if all(_is_int(k) and isinstance(v, str) for k, v in raw.items()):
        raw = {v: int(k) for k, v in raw.items()}  # value -> name, as TotalSegmentator's class map
    out: LabelMap = {}
    for name, values in raw.items():
        vals = values if isinstance(values, list) else [values]
        if not vals or not all(_is_int(v) for v in vals):
            raise DataError(f"{option}: '{path}': class '{name}' has value {values!r}; give whole numbers")
        if [int(v) for v in vals] == [0]:
            continue  # background
        out[_checked_name(str(name), f"{option} {path}", out)] = tuple(int(v) for v in vals)
    return out


def label_map(text: str, option: str) -> tuple[LabelMap, bool]:
    """``--ref-labels``: a label map file when ``text`` names one, else inline ``name=value`` pairs.

    Returns:
        (the map, whether it came from a file: a whole data set's map, which may name classes that
        are not scored).
    """
    if Path(text).is_file() or text.lower().endswith((".json", ".yaml", ".yml")):
        if not Path(text).is_file():
            raise DataError(f"{option}: file '{text}' not found")
        return read_label_map(Path(text), option), True
    return parse_label_map(text, option), False


def model_classes(run: Path) -> list[ScoredClass]:
    """The classes of a trained study (``--model``): a run folder or its ``config.yaml``.

    Raises:
        DataError: no ``config.yaml`` there, or one that does not validate.
    """
    from medseg.config.load import load_pipeline
    from medseg.run_dir import RunDir

    path = Path(run)
    config = RunDir(path).config if path.is_dir() else path
    if not config.is_file():
        raise DataError(f"--model: no config.yaml in '{run}'; give a run folder written by `medseg run`")
    cfg = load_pipeline(config)
    picked = cfg.data.labels or {}
    out = []
    for value, name in cfg.class_names.items():
        given = picked.get(name, value)
        refs = tuple(given) if isinstance(given, list) else (int(given),)
        out.append(ScoredClass(name, value, refs, cfg.nsd_tolerance(value)))
    return out


def resolve(
    model: list[ScoredClass] | None,
    classes: str | None,
    ref_labels: LabelMap | None,
    whole_map: bool = False,
) -> list[ScoredClass] | None:
    """The classes to score from ``--model``, ``--classes`` and ``--ref-labels``; None when none of
    them is given (every value found is scored, unnamed).

    Args:
        model: the classes of ``--model`` (:func:`model_classes`).
        classes: ``--classes``: a subset of the model's by name, or names with their values.
        ref_labels: ``--ref-labels``: the classes' values in the references.
        whole_map: ``ref_labels`` is a data set's whole label map (a file): names that are not
            scored are passed over, though at least one must be.

    Raises:
        DataError: a name not among the classes, ``--classes`` without values and without a model,
            or two classes sharing a value.
    """
    if model is not None:
        found = list(model)
        if classes is not None:
            chosen = parse_label_map(classes, "--classes", values_needed=False)
            _known(chosen, found, "--classes")
            found = [c for c in found if c.name in chosen]
    elif classes is not None:
        given = parse_label_map(classes, "--classes")
        bad = [n for n, v in given.items() if len(v) != 1]
        if bad:
            raise DataError(f"--classes {bad[0]}: give its one value in the predictions, e.g. {bad[0]}=1")
        found = [ScoredClass(n, v[0], v) for n, v in given.items()]
    elif ref_labels is not None:  # classes 1, 2, ... in their order, as data.labels numbers them
        found = [ScoredClass(n, i, v) for i, (n, v) in enumerate(ref_labels.items(), start=1)]
    else:
        return None
    if ref_labels is not None:
        _known(ref_labels, found, "--ref-labels", whole_map)
        found = [
            ScoredClass(c.name, c.value, ref_labels.get(c.name, c.ref_values), c.tolerance) for c in found
        ]
    _distinct(found)
    return found


def remap_reference(ref: np.ndarray, classes: list[ScoredClass]) -> np.ndarray:
    """A reference in the predictions' values: each class's reference values become its value, every
    other value background.

    Example:
        >>> ref = np.array([0, 1, 5, 2, 3, 9])
        >>> remap_reference(ref, [ScoredClass("liver", 1, (5,)), ScoredClass("kidneys", 2, (2, 3))])
        array([0, 0, 1, 2, 2, 0])
    """
    if all(c.ref_values == (c.value,) for c in classes) and set(np.unique(ref).tolist()) <= {
        0,
        *(c.value for c in classes),
    }:
        return ref
    lookup_size = max([int(ref.max(initial=0)), *(v for c in classes for v in c.ref_values)]) + 1
    if ref.min(initial=0) < 0 or lookup_size > 1 << 20:  # negative or huge values: compare one by one
        out = np.zeros(ref.shape, np.int64)
        for c in classes:
            out[np.isin(ref, c.ref_values)] = c.value
        return out
    table = np.zeros(lookup_size, np.int64)
    for c in classes:
        table[list(c.ref_values)] = c.value
    return table[ref]


def _checked_name(name: str, option: str, seen: Mapping[str, Any]) -> str:
    if not NAME.fullmatch(name) or name == RESERVED:
        raise DataError(
            f"{option}: class name '{name}': use letters, digits, '_', '.' or '-', starting with a letter "
            f"(and not '{RESERVED}', the mean over classes)"
        )
    if name in seen:
        raise DataError(f"{option}: class '{name}' given twice")
    return name


def _known(given: Mapping[str, Any], classes: list[ScoredClass], option: str, some: bool = False) -> None:
    """Refuse names in ``given`` that are not among ``classes`` (``some``: only when none is)."""
    names = [c.name for c in classes]
    unknown = [n for n in given if n not in names]
    if unknown and not (some and len(unknown) < len(given)):
        raise DataError(f"{option}: {unknown[:10]} not among the classes {names}")


def _distinct(classes: list[ScoredClass]) -> None:
    """Refuse two classes with one prediction value or one reference value, and background (0)."""
    for what, values in (
        ("prediction value", [(c.name, c.value) for c in classes]),
        ("reference value", [(c.name, v) for c in classes for v in c.ref_values]),
    ):
        owner: dict[int, str] = {}
        for name, value in values:
            if value == 0:
                raise DataError(f"class '{name}': {what} 0 is background; give its own value")
            if value in owner and owner[value] != name:
                raise DataError(f"classes '{owner[value]}' and '{name}' share the {what} {value}")
            owner[value] = name


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()
