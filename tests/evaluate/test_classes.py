"""Classes of `medseg evaluate`: label maps read inline and from files, a model's classes, and the
reference renumbered into the prediction's values (a 117-value map included)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.config.load import dump_config, validate_dict
from medseg.errors import DataError
from medseg.evaluate.classes import (
    ScoredClass,
    label_map,
    model_classes,
    parse_label_map,
    remap_reference,
    resolve,
)


def test_inline_label_maps_and_their_mistakes():
    assert parse_label_map("liver=5, spleen=1,kidneys=2+3", "--ref-labels") == {
        "liver": (5,),
        "spleen": (1,),
        "kidneys": (2, 3),
    }
    assert parse_label_map("liver,spleen", "--classes", values_needed=False) == {"liver": (), "spleen": ()}
    for bad, message in [
        ("liver", "has no value"),
        ("liver=five", "whole numbers"),
        ("liver=5,liver=6", "given twice"),
        ("mean=3", "not 'mean'"),
        ("2liver=3", "starting with a letter"),
        (" , ", "no class given"),
    ]:
        with pytest.raises(DataError, match=message):
            parse_label_map(bad, "--ref-labels")


def test_label_map_files_in_three_forms(tmp_path):
    ours = tmp_path / "map.yaml"
    ours.write_text("liver: 5\nkidneys: [2, 3]\n")
    totalsegmentator = tmp_path / "ts.json"
    totalsegmentator.write_text(json.dumps({"1": "spleen", "2": "kidney_right", "5": "liver"}))
    nnunet = tmp_path / "dataset.json"
    nnunet.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}, "numTraining": 3}))
    assert label_map(str(ours), "--ref-labels") == ({"liver": (5,), "kidneys": (2, 3)}, True)
    assert label_map(str(totalsegmentator), "--ref-labels")[0] == {
        "spleen": (1,),
        "kidney_right": (2,),
        "liver": (5,),
    }
    assert label_map(str(nnunet), "--ref-labels")[0] == {"liver": (1,), "tumour": (2,)}
    assert label_map("liver=5", "--ref-labels") == ({"liver": (5,)}, False)
    with pytest.raises(DataError, match="file 'nope.json' not found"):
        label_map("nope.json", "--ref-labels")
    (tmp_path / "bad.json").write_text('{"liver": "five"}')
    with pytest.raises(DataError, match="class 'liver' has value 'five'"):
        label_map(str(tmp_path / "bad.json"), "--ref-labels")


def test_the_classes_of_a_model_come_from_its_config(tmp_path):
    raw = {
        "name": "ct",
        "output_dir": str(tmp_path),
        "data": {
            "root": str(tmp_path),
            "num_classes": 4,
            "labels": {"liver": 5, "spleen": 1, "kidneys": [2, 3]},
        },
        "evaluate": {"nsd_tolerance": [2.0, 3.0, 1.5]},
    }
    (tmp_path / "config.yaml").write_text(dump_config(validate_dict(raw)))
    assert model_classes(tmp_path) == [
        ScoredClass("liver", 1, (5,), 2.0),
        ScoredClass("spleen", 2, (1,), 3.0),
        ScoredClass("kidneys", 3, (2, 3), 1.5),
    ]
    named = validate_dict(
        {
            "name": "demo",
            "output_dir": str(tmp_path),
            "data": {"root": str(tmp_path), "class_names": ["lesion"]},
        }
    )
    (tmp_path / "other.yaml").write_text(dump_config(named))
    assert model_classes(tmp_path / "other.yaml") == [ScoredClass("lesion", 1, (1,), 2.0)]
    with pytest.raises(DataError, match="no config.yaml"):
        model_classes(tmp_path / "missing")


def test_resolve_subsets_renames_and_refuses():
    model = [ScoredClass("liver", 1, (5,), 2.0), ScoredClass("spleen", 2, (1,), 3.0)]
    assert resolve(model, "spleen", None) == [ScoredClass("spleen", 2, (1,), 3.0)]
    assert resolve(model, None, {"liver": (6,)}) == [ScoredClass("liver", 1, (6,), 2.0), model[1]]
    assert resolve(None, "a=1,b=2", None) == [ScoredClass("a", 1, (1,)), ScoredClass("b", 2, (2,))]
    # --ref-labels alone numbers the prediction's classes 1, 2, ... as data.labels does
    assert resolve(None, None, {"liver": (5,), "spleen": (1,)}) == [
        ScoredClass("liver", 1, (5,)),
        ScoredClass("spleen", 2, (1,)),
    ]
    assert resolve(None, None, None) is None
    # a whole label map file may name classes that are not scored; inline names may not
    whole = {"liver": (5,), "aorta": (52,), "spleen": (1,)}
    assert resolve(model, None, whole, whole_map=True) == model
    with pytest.raises(DataError, match=r"\['aorta'\] not among the classes \['liver', 'spleen'\]"):
        resolve(model, None, whole)
    with pytest.raises(DataError, match="not among the classes"):
        resolve(model, None, {"aorta": (52,)}, whole_map=True)
    with pytest.raises(DataError, match=r"--classes: \['kidney'\] not among"):
        resolve(model, "kidney", None)
    with pytest.raises(DataError, match="has no value"):
        resolve(None, "liver", None)
    with pytest.raises(DataError, match="share the reference value 5"):
        resolve(None, "a=1,b=2", {"a": (5,), "b": (5,)})
    with pytest.raises(DataError, match="prediction value 0 is background"):
        resolve(None, "a=0", None)


def test_remapping_a_117_value_reference_equals_a_lookup_by_hand():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 118, size=(30, 20, 10)).astype(np.uint8)  # TotalSegmentator's 117 classes
    classes = [
        ScoredClass("liver", 1, (5,)),
        ScoredClass("spleen", 2, (1,)),
        ScoredClass("kidneys", 3, (2, 3)),
    ]
    out = remap_reference(ref, classes)
    expected = np.zeros(ref.shape, np.int64)
    expected[ref == 5] = 1
    expected[ref == 1] = 2
    expected[(ref == 2) | (ref == 3)] = 3
    np.testing.assert_array_equal(out, expected)
    same = np.array([0, 1, 2, 1])
    assert remap_reference(same, [ScoredClass("a", 1, (1,)), ScoredClass("b", 2, (2,))]) is same
    negative = np.array([-1, 5, 70000])
    np.testing.assert_array_equal(remap_reference(negative, [ScoredClass("a", 1, (70000,))]), [0, 0, 1])
