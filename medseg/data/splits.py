"""Cross-validation splits: grouped by patient, stratified by diagnosis, seeded, saved and reused.

``splits.json`` has the nnU-Net shape, a list with one ``{"train": [...], "val": [...]}`` per fold,
so an nnU-Net ``splits_final.json`` can be given as ``split.file``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import SplitConfig
from medseg.errors import DataError
from medseg.io.atomic import write_json
from medseg.io.case import Case

Split = dict[str, list[str]]


def _groups_and_strata(cases: list[Case], cfg: SplitConfig) -> tuple[list[str], list[str]]:
    groups = [str(c.attribute(cfg.group_by) or c.id) if cfg.group_by else c.id for c in cases]
    strata = [str(c.attribute(cfg.stratify_by) or "") if cfg.stratify_by else "" for c in cases]
    return groups, strata


def make_splits(cases: list[Case], cfg: SplitConfig) -> list[Split]:
    """``n_folds`` folds in which no group (patient) appears on both sides.

    Args:
        cases: the usable cases, each with its ``group``.
        cfg: the ``split`` section (number of folds, seed, stratification).

    Returns:
        One split (training ids, held-out ids) per fold.

    Raises:
        DataError: fewer groups than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups, strata = _groups_and_strata(cases, cfg)
    if len(set(groups)) < cfg.n_folds:
        raise DataError(
            f"split.n_folds: {cfg.n_folds} folds need at least {cfg.n_folds} patients/groups, "
            f"found {len(set(groups))}; lower split.n_folds"
        )
    ids = np.array([c.id for c in cases])
    kfold = StratifiedGroupKFold(n_splits=cfg.n_folds, shuffle=True, random_state=cfg.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has fewer members"
        folds = [
            {"train": sorted(ids[tr].tolist()), "val": sorted(ids[va].tolist())}
            for tr, va in kfold.split(ids, strata, groups)
        ]
    return folds


def check_splits(splits: Any, cases: list[Case], source: str, n_folds: int | None = None) -> list[Split]:
    """Validate a loaded splits list against the datalist; raise DataError naming what is off."""
    if not isinstance(splits, list) or not all(
        isinstance(s, dict) and isinstance(s.get("train"), list) and isinstance(s.get("val"), list)
        for s in splits
    ):
        raise DataError(
            f"{source}: expected a list of {{'train': [...], 'val': [...]}} entries, one per fold"
        )
    if n_folds is not None and len(splits) != n_folds:
        raise DataError(
            f"{source}: has {len(splits)} folds but split.n_folds is {n_folds}; "
            "delete the file to make new splits, or set split.n_folds"
        )
    known = {c.id for c in cases}
    held_out: list[str] = []
    for k, fold in enumerate(splits):
        unknown = sorted((set(fold["train"]) | set(fold["val"])) - known)
        if unknown:
            raise DataError(
                f"{source}: fold {k} lists cases not in the data: {unknown[:10]}; "
                "delete the file to make new splits, or fix it"
            )
        overlap = sorted(set(fold["train"]) & set(fold["val"]))
        if overlap:
            raise DataError(f"{source}: fold {k} has cases in both train and val: {overlap[:10]}")
        held_out += fold["val"]
    missing = sorted(known - set(held_out))
    if missing:
        raise DataError(
            f"{source}: cases held out by no fold: {missing[:10]}; delete the file to make new splits"
        )
    return [{"train": list(s["train"]), "val": list(s["val"])} for s in splits]


def load_or_make_splits(cases: list[Case], cfg: SplitConfig, target: Path) -> list[Split]:
    """The cross-validation splits of ``cases``, saved to ``target``.

    Args:
        cases: the verified cases of the study.
        cfg: the ``split`` settings.
        target: the run folder's ``splits.json``.

    Returns:
        One ``{"train": ids, "val": ids}`` per fold: the user's ``split.file``, else ``target``
        from an earlier run, else new grouped and stratified splits.

    Raises:
        DataError: a missing ``split.file``, or saved splits that do not fit the cases.
    """
    if cfg.file is not None:
        if not Path(cfg.file).is_file():
            raise DataError(f"split.file: '{cfg.file}' not found")
        splits = check_splits(_read(Path(cfg.file)), cases, str(cfg.file))
    elif target.is_file():
        return check_splits(_read(target), cases, str(target), cfg.n_folds)
    else:
        splits = make_splits(cases, cfg)
    write_json(target, splits)
    return splits


def inner_validation(
    train_ids: list[str], cases: list[Case], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split a fold's training cases into (fit, early-stopping validation), grouped by patient."""
    from sklearn.model_selection import GroupShuffleSplit

    if fraction == 0:
        return sorted(train_ids), []
    by_id = {c.id: c for c in cases}
    groups = [by_id[i].patient for i in train_ids]
    if len(set(groups)) < 2:
        raise DataError(
            "train.val_fraction: a fold needs at least two patients to hold some back for validation; "
            "set train.val_fraction: 0 to train without early stopping"
        )
    gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    fit_idx, val_idx = next(gss.split(train_ids, groups=groups))
    return sorted(train_ids[i] for i in fit_idx), sorted(train_ids[i] for i in val_idx)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
