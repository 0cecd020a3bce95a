from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from medseg.config.models import SplitConfig
from medseg.data.splits import inner_validation, load_or_make_splits, make_splits
from medseg.errors import DataError
from medseg.io.case import Case
from medseg.io.source import Source


def _cases(n: int = 60) -> list[Case]:
    diagnoses = ["common_nevus", "atypical_nevus", "melanoma"]
    image = (Source.one("x.png", "raster"),)
    return [Case(f"C{i:03d}", image, None, f"P{i // 3:02d}", diagnoses[(i // 3) % 3]) for i in range(n)]


def test_folds_are_grouped_by_patient_and_cover_every_case_once() -> None:
    cases = _cases()
    splits = make_splits(cases, SplitConfig(n_folds=5, seed=1))
    assert len(splits) == 5
    patient = {c.id: c.patient for c in cases}
    held = [i for s in splits for i in s["val"]]
    assert sorted(held) == sorted(c.id for c in cases)
    for s in splits:
        assert not {patient[i] for i in s["train"]} & {patient[i] for i in s["val"]}
        assert not set(s["train"]) & set(s["val"])


def test_folds_are_stratified_by_diagnosis() -> None:
    cases = _cases()
    diag = {c.id: c.diagnosis for c in cases}
    for s in make_splits(cases, SplitConfig(n_folds=5, seed=1)):
        counts = Counter(diag[i] for i in s["val"])
        assert set(counts) == {"common_nevus", "atypical_nevus", "melanoma"}
        assert max(counts.values()) - min(counts.values()) <= 3


def test_same_seed_same_splits_other_seed_other_splits() -> None:
    cases = _cases()
    assert make_splits(cases, SplitConfig(seed=3)) == make_splits(cases, SplitConfig(seed=3))
    assert make_splits(cases, SplitConfig(seed=3)) != make_splits(cases, SplitConfig(seed=4))


def test_splits_are_saved_and_reused(tmp_path: Path) -> None:
    cases = _cases()
    first = load_or_make_splits(cases, SplitConfig(seed=0), tmp_path / "splits.json")
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert saved == first
    # a rerun with another seed keeps the saved splits
    assert load_or_make_splits(cases, SplitConfig(seed=99), tmp_path / "splits.json") == first


def test_user_splits_file_is_accepted_and_checked(tmp_path: Path) -> None:
    cases = _cases(10)
    ids = [c.id for c in cases]
    user = [{"train": ids[5:], "val": ids[:5]}, {"train": ids[:5], "val": ids[5:]}]
    path = tmp_path / "my_splits.json"
    path.write_text(json.dumps(user))
    out = load_or_make_splits(cases, SplitConfig(file=path), tmp_path / "run" / "splits.json")
    assert out == user
    bad = [{"train": ids[5:] + ["ghost"], "val": ids[:5]}, {"train": ids[:5], "val": ids[5:]}]
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="not in the data: \\['ghost'\\]"):
        load_or_make_splits(cases, SplitConfig(file=path), tmp_path / "run2" / "splits.json")


def test_saved_splits_with_other_cases_are_refused(tmp_path: Path) -> None:
    load_or_make_splits(_cases(30), SplitConfig(), tmp_path / "splits.json")
    with pytest.raises(DataError, match="delete the file"):
        load_or_make_splits(_cases(30)[:-3], SplitConfig(), tmp_path / "splits.json")


def test_too_few_patients_for_the_folds() -> None:
    with pytest.raises(DataError, match="need at least 5 patients"):
        make_splits(_cases(9), SplitConfig(n_folds=5))


def test_inner_validation_is_grouped() -> None:
    cases = _cases()
    ids = [c.id for c in cases]
    fit, val = inner_validation(ids, cases, 0.2, seed=0)
    patient = {c.id: c.patient for c in cases}
    assert val and fit and not {patient[i] for i in fit} & {patient[i] for i in val}
    assert sorted(fit + val) == sorted(ids)
