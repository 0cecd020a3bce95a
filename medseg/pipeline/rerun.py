"""Running a study again in a folder that holds fold models: which settings may change, and which
folds are left to train.

Fold models are trained with the settings in ``config.yaml``; ``medseg predict`` and the report
read those settings back. So once a fold has weights, a rerun whose settings would change what the
models are (data, splits, transforms, network, training, seed) or how they are scored (inference,
evaluation) is refused with the keys that differ, because the old models would be used with new
settings. A ``--fold K`` job is held to the folder's ``config.yaml`` as soon as the file exists,
weights or not: the other fold jobs of the study train (or are about to train) with it. What may
change: more ``train.epochs`` (the documented extension), the folds a job runs, and settings that
leave models and scores alone (the folder's own path, tracking, preview, ``predict``, the executor,
workers, device, caching). ``medseg run --force`` starts afresh instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from medseg.config.models import PipelineConfig
from medseg.errors import ConfigError
from medseg.run_dir import RunDir

FREE = (
    "name",
    "output_dir",  # the same folder, perhaps moved
    "fingerprint",
    "tracking",
    "preview",
    "predict",
    "executor",
    "data.label_codes",  # what a DICOM SEG calls a class
    "data.class_names",  # what tables, plots and metric names call it
    "split.folds",
    "train.num_workers",
    "train.loader",
    "train.device",
    "train.cache_rate",
)
EPOCHS = "train.epochs"
CHOSEN = ("infer.largest_component", "infer.fill_holes")  # auto: chosen by the run


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{dotted.key: value}``; items of lists of sections are keyed by position,
    lists of plain values stay whole.

    Example:
        >>> flatten({"train": {"epochs": 3}, "t": [{"a": 1}], "size": [96, 128]})
        {'train.epochs': 3, 't.0.a': 1, 'size': [96, 128]}
    """
    items: list[tuple[Any, Any]]
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        items = [(str(i), v) for i, v in enumerate(data)]
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _is_free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FREE)


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose change would make the fold models trained with ``old`` disagree with ``new``.

    A statistic left unset in ``new`` (filled from ``intensity_stats.json`` when the run binds it)
    is not a change; fewer ``train.epochs`` than were trained is.

    Example:
        >>> old = {"seed": 0, "train": {"epochs": 5, "lr": 0.1}, "tracking": {"uri": "a"}}
        >>> changed_settings(old, {"seed": 1, "train": {"epochs": 8, "lr": 0.1}, "tracking": {"uri": "b"}})
        ['seed']
        >>> changed_settings(old, {"seed": 0, "train": {"epochs": 2, "lr": 0.1}, "tracking": {}})
        ['train.epochs']
    """
    a, b = flatten(old), flatten(new)
    changed = []
    for key in sorted(a.keys() | b.keys()):
        before, after = a.get(key), b.get(key)
        if before == after or _is_free(key):
            continue
        if key == EPOCHS and isinstance(before, int) and isinstance(after, int) and after > before:
            continue
        if key.startswith("transforms.preprocess.") and after is None and isinstance(before, int | float):
            continue
        if key == "data.channel_files" and after is None:
            continue  # found at ingest, written into config.yaml
        if any(key.startswith(k) and b.get(k) == "auto" for k in CHOSEN):
            continue  # the run's own choice, written into config.yaml
        changed.append(key)
    return changed


def _saved(run_dir: RunDir) -> dict[str, Any]:
    """``config.yaml`` as the current schema reads it (defaults of newer keys filled)."""
    raw = yaml.safe_load(run_dir.config.read_text()) or {}
    try:
        return PipelineConfig.model_validate(raw).model_dump(mode="json")
    except ValidationError:
        return dict(raw)


def refuse_changed_rerun(run_dir: RunDir, cfg: PipelineConfig) -> None:
    """Refuse to run ``cfg`` in a folder whose fold models were trained with other settings.

    Args:
        run_dir: the run folder.
        cfg: the settings of this run, before statistics are bound.

    Raises:
        ConfigError: the folder has fold weights, or ``cfg`` runs chosen folds (``split.folds``: a
            fold job beside others), and ``config.yaml`` differs in keys that matter, each named
            (at most 12), with the ways on.
    """
    fold_job = cfg.split.folds is not None
    if not run_dir.config.is_file() or not (fold_job or run_dir.has_models()):
        return
    keys = changed_settings(_saved(run_dir), cfg.model_dump(mode="json"))
    if not keys:
        return
    shown = ", ".join(keys[:12]) + (f" and {len(keys) - 12} more" if len(keys) > 12 else "")
    what = "fold models trained" if run_dir.has_models() else "a study whose fold jobs train"
    raise ConfigError(
        f"{run_dir.root} holds {what} with other settings ({run_dir.config}); these differ: {shown}. "
        "The folds would be trained or used with different settings. Run again with the settings of "
        "config.yaml (a larger train.epochs extends the run), give another output_dir, or run the "
        "whole study with --force to start afresh (its fold models and results are deleted)"
    )


def fold_count(cfg: PipelineConfig, run_dir: RunDir) -> int:
    """How many folds the study has: as the user's ``split.file`` or the run's ``splits.json`` says,
    else ``split.n_folds``."""
    for path in (cfg.split.file, run_dir.splits):
        if path is not None and Path(path).is_file():
            try:
                return len(json.loads(Path(path).read_text()))
            except (json.JSONDecodeError, TypeError, OSError):
                pass  # the run refuses it, naming the file
    return cfg.split.n_folds


def unfinished_folds(cfg: PipelineConfig, run_dir: RunDir) -> list[int]:
    """The folds of ``split.folds`` (default: every fold) not yet done for ``train.epochs`` epochs.

    Example:
        >>> raw = {"name": "x", "output_dir": "/nonexistent", "data": {"root": "d"}}
        >>> cfg = PipelineConfig.model_validate(raw)
        >>> unfinished_folds(cfg, RunDir(cfg.output_dir))
        [0, 1, 2, 3, 4]
    """
    state = run_dir.read_state()
    folds = cfg.split.folds if cfg.split.folds is not None else range(fold_count(cfg, run_dir))
    return [k for k in folds if not run_dir.fold_is_done(state, k, cfg.train.epochs)]
