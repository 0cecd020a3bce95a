"""A 117-class reference (TotalSegmentator's numbering) scored against a prediction numbered as the
model numbers its classes, without renumbering by hand: through the model's `data.labels`, an inline
`--ref-labels`, or TotalSegmentator's value -> name map as a file. Dice values come from numpy."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli import app

from ..conftest import ROOT, SHARED_DATA

REAL = SHARED_DATA / "ct" / "totalsegmentator-example" / "seg_3mm.nii.gz"
MODEL = {"liver": (1, (5,)), "spleen": (2, (1,)), "kidneys": (3, (2, 3))}  # pipelines/ct.yaml's data.labels


def synthetic_117(shape: tuple[int, int, int] = (40, 36, 20)) -> tuple[np.ndarray, np.ndarray]:
    """A label map holding every value 1..117 in blocks, with a liver (5), spleen (1) and kidneys
    (2 and 3) larger than the rest."""
    rng = np.random.default_rng(7)
    label = np.zeros(shape, np.uint8)
    for value in range(1, 118):
        x, y, z = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3), rng.integers(0, shape[2] - 2)
        label[x : x + 3, y : y + 3, z : z + 2] = value
    label[4:20, 4:18, 3:15] = 5
    label[24:32, 6:12, 4:10] = 1
    label[26:30, 20:26, 5:12] = 2
    label[32:36, 20:26, 5:12] = 3
    return label, np.diag([1.5, 1.5, 3.0, 1.0])


@pytest.fixture(params=["synthetic", "totalsegmentator"])
def reference(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    if request.param == "synthetic":
        return synthetic_117()
    if not REAL.is_file():
        pytest.skip(f"real TotalSegmentator label map not present at {REAL}")
    img = nib.load(REAL)
    return np.asarray(img.dataobj).astype(np.uint8), img.affine


def model_numbered(ref: np.ndarray) -> np.ndarray:
    """The reference as the model numbers it, then spoiled: the liver's first slices missed and a
    false spleen block added."""
    pred = np.zeros(ref.shape, np.uint8)
    for value, ref_values in MODEL.values():
        pred[np.isin(ref, ref_values)] = value
    liver_slices = np.nonzero((pred == 1).any(axis=(0, 1)))[0]
    pred[:, :, liver_slices[:2]] = np.where(
        pred[:, :, liver_slices[:2]] == 1, 0, pred[:, :, liver_slices[:2]]
    )
    pred[:4, :4, :2] = 2
    return pred


def dice(pred: np.ndarray, ref: np.ndarray, value: int, ref_values: tuple[int, ...]) -> float:
    p, r = pred == value, np.isin(ref, ref_values)
    return float(2 * (p & r).sum() / (p.sum() + r.sum()))


def evaluate(tmp_path: Path, *options: str) -> dict:
    out = tmp_path / f"ev{len(list(tmp_path.glob('ev*')))}"
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    return json.loads((out / "summary.json").read_text())["labels"]


def test_a_117_class_reference_is_scored_through_a_label_map(reference, tmp_path):
    ref, affine = reference
    assert set(np.unique(ref)) >= {1, 2, 3, 5} and ref.max() > 100  # many classes beside the model's
    pred = model_numbered(ref)
    for folder, array in (("ref", ref), ("pred", pred)):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(array, affine), tmp_path / folder / "case.nii.gz")
    expected = {name: dice(pred, ref, *spec) for name, spec in MODEL.items()}
    assert expected["kidneys"] == 1.0 and expected["liver"] < 1.0 and expected["spleen"] < 1.0

    by_model = evaluate(tmp_path, "--model", str(ROOT / "pipelines" / "ct.yaml"))
    assert list(by_model) == ["liver", "spleen", "kidneys", "mean"]
    for name, value in expected.items():
        assert by_model[name]["dice"]["mean"] == pytest.approx(value, abs=1e-6), name

    inline = evaluate(tmp_path, "--ref-labels", "liver=5,spleen=1,kidneys=2+3")  # numbered 1, 2, 3
    assert {n: inline[n]["dice"]["mean"] for n in MODEL} == {n: by_model[n]["dice"]["mean"] for n in MODEL}

    names = {str(v): f"class_{v}" for v in range(1, 118)} | {"1": "spleen", "5": "liver"}
    (tmp_path / "totalsegmentator.json").write_text(json.dumps(names))  # TotalSegmentator's value -> name
    whole = evaluate(
        tmp_path, "--classes", "liver=1,spleen=2", "--ref-labels", str(tmp_path / "totalsegmentator.json")
    )
    assert list(whole) == ["liver", "spleen", "mean"]
    assert whole["liver"]["dice"]["mean"] == pytest.approx(expected["liver"], abs=1e-6)

    unmapped = evaluate(tmp_path)  # values as they are: each reference value its own class
    assert len(unmapped) == len(np.unique(ref)) - 1 + 1  # every non-zero value, and the mean
    assert unmapped["label_5"]["dice"]["mean"] == 0.0  # the liver is 1 in the prediction
