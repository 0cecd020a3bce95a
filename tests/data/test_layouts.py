"""nnU-Net v2 and Decathlon data sets, and tables of several channel files: typed cases, channels
in their order, dataset.json read into the settings, clear refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.config.load import load_pipeline
from medseg.config.models import DataConfig
from medseg.data.datalist import build_datalist
from medseg.data.synthetic_datasets import write_mr_decathlon, write_mr_nnunet, write_rgb_nnunet
from medseg.errors import ConfigError, DataError
from medseg.io.nifti import nifti_array
from medseg.transforms.loader import LoadCased


@pytest.fixture(scope="module")
def mr(tmp_path_factory) -> Path:
    return write_mr_nnunet(tmp_path_factory.mktemp("nn") / "Dataset101_MR", n_train=6, n_test=2)


def _nnunet(root: Path) -> DataConfig:
    return DataConfig(
        root=root, layout="nnunet", in_channels=2, num_classes=3, labels={"oedema": 1, "core": 2}
    )


def test_nnunet_cases_have_their_channel_files_in_order(mr):
    cases, bad = build_datalist(_nnunet(mr), spatial_dims=3)
    assert bad == [] and [c.id for c in cases] == [f"mr_{i:03d}" for i in range(6)]
    first = cases[0]
    assert [s.path.name for s in first.images] == ["mr_000_0000.nii.gz", "mr_000_0001.nii.gz"]
    assert first.label is not None and first.label.path == mr / "labelsTr" / "mr_000.nii.gz"
    assert first.shape == (32, 32, 12) and first.spacing == (1.2, 1.2, 3.0)
    assert {s.kind for s in first.images} == {"nifti"}


def test_swapping_the_channel_files_swaps_the_channels_the_network_sees(mr, tmp_path):
    cases, _ = build_datalist(_nnunet(mr), spatial_dims=3)
    item = LoadCased(["image", "label"], spatial_dims=3, channels=2)(cases[0].item())
    t1 = nifti_array(mr / "imagesTr" / "mr_000_0000.nii.gz")[0]
    t2 = nifti_array(mr / "imagesTr" / "mr_000_0001.nii.gz")[0]
    np.testing.assert_allclose(item["image"][0].numpy(), t1)
    np.testing.assert_allclose(item["image"][1].numpy(), t2)
    swapped = tmp_path / "Dataset101_MR"
    shutil.copytree(mr, swapped)
    first, second = swapped / "imagesTr" / "mr_000_0000.nii.gz", swapped / "imagesTr" / "mr_000_0001.nii.gz"
    first.rename(tmp_path / "x.nii.gz")
    second.rename(first)
    (tmp_path / "x.nii.gz").rename(second)
    cases, _ = build_datalist(_nnunet(swapped), spatial_dims=3)
    item = LoadCased(["image"], spatial_dims=3, channels=2)(cases[0].item())
    np.testing.assert_allclose(item["image"][0].numpy(), t2)
    np.testing.assert_allclose(item["image"][1].numpy(), t1)


def test_a_case_missing_a_channel_or_label_is_bad_with_the_reason(mr, tmp_path):
    broken = tmp_path / "Dataset102_Broken"
    shutil.copytree(mr, broken)
    (broken / "imagesTr" / "mr_001_0001.nii.gz").unlink()
    (broken / "labelsTr" / "mr_002.nii.gz").unlink()
    (broken / "imagesTr" / "mr_003_0001.nii.gz").rename(broken / "imagesTr" / "mr_003_0002.nii.gz")
    with pytest.raises(DataError) as err:
        build_datalist(_nnunet(broken), spatial_dims=3)
    text = str(err.value)
    assert "mr_001: 1 channel file(s) (mr_001_0000.nii.gz); the other cases have 2 (_0000 to _0001)" in text
    assert f"mr_002: {broken / 'labelsTr' / 'mr_002.nii.gz'} not found" in text
    assert "mr_003: channel files ['0000', '0002'] are not numbered 0000, 0001, ... without a gap" in text


def test_dataset_json_fills_the_channels_and_classes_of_the_pipeline(mr, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: p\noutput_dir: {tmp_path / 'run'}\ndata: {{root: {mr}, layout: nnunet}}\n"
        "transforms: {spacing: [1.2, 1.2, 3.0], patch_size: [32, 32, 12]}\n"
    )
    cfg = load_pipeline(pipeline)
    assert cfg.data.channel_names == ["T1", "T2"] and cfg.data.in_channels == 2
    assert cfg.data.labels == {"oedema": 1, "core": 2} and cfg.data.num_classes == 3
    assert cfg.class_names == {1: "oedema", 2: "core"}
    with pytest.raises(ConfigError, match=r"data.channel_names \['T2', 'T1'\] differ from .*\['T1', 'T2'\]"):
        load_pipeline(pipeline, ["data.channel_names=[T2, T1]"])
    picked = load_pipeline(pipeline, ["data.labels={core: 2}", "data.num_classes=2"])
    assert picked.class_names == {1: "core"}  # a subset may be picked


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": {"background": 0, "tumour": [1, 2]}}, "are regions .* give each label one value"),
        ({"file_ending": ".nrrd"}, r"file_ending '.nrrd': medseg reads .nii.gz"),
        ({"labels": {"background": 0, "a": 1, "b": 3}}, "must be consecutive 0, 1, 2"),
        ({"channel_names": {"0": "T1", "2": "T2"}}, "must number its channels 0, 1, ..., 1"),
    ],
)
def test_a_dataset_json_medseg_cannot_follow_is_refused_by_key(mr, tmp_path, change, message):
    root = tmp_path / "Dataset103_X"
    shutil.copytree(mr, root)
    data = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**data, **change}))
    with pytest.raises(DataError, match=message):
        build_datalist(_nnunet(root), spatial_dims=3)


def test_decathlon_cases_are_one_4d_file_of_every_channel(tmp_path):
    root = write_mr_decathlon(tmp_path / "Task01_MR", n_train=4, n_test=1)
    data = DataConfig(
        root=root, layout="decathlon", in_channels=2, num_classes=3, labels={"oedema": 1, "core": 2}
    )
    cases, bad = build_datalist(data, spatial_dims=3)
    assert bad == [] and len(cases) == 4 and len(cases[0].images) == 1
    item = LoadCased(["image", "label"], spatial_dims=3, channels=2)(cases[0].item())
    assert tuple(item["image"].shape) == (2, 32, 32, 12) and tuple(item["label"].shape) == (1, 32, 32, 12)
    nn = write_mr_nnunet(tmp_path / "Dataset101_MR", n_train=4, n_test=1)  # the same cases, one file each
    t2 = nifti_array(nn / "imagesTr" / "mr_000_0001.nii.gz")[0]
    np.testing.assert_allclose(item["image"][1].numpy(), t2)


def test_rgb_pictures_are_one_file_of_three_channels(tmp_path):
    root = write_rgb_nnunet(tmp_path / "Dataset102_Pics", n_train=4, n_test=1)
    data = DataConfig(root=root, layout="nnunet", in_channels=3, num_classes=2, labels={"lesion": 1})
    cases, bad = build_datalist(data, spatial_dims=2)
    assert bad == [] and len(cases) == 4 and cases[0].shape == (48, 64)
    assert [s.path.name for s in cases[0].images] == ["pic_000_0000.png"]


def test_a_table_takes_one_file_per_channel(mr, tmp_path):
    image, label = mr / "imagesTr", mr / "labelsTr"
    rows = [
        {"id": f"c{i}", "image_0000": str(image / f"mr_00{i}_0000.nii.gz"),
         "image_0001": str(image / f"mr_00{i}_0001.nii.gz"), "label": str(label / f"mr_00{i}.nii.gz")}
        for i in range(3)
    ]  # fmt: skip
    rows.append(
        {"id": "listed", "image": [rows[0]["image_0000"], rows[0]["image_0001"]], "label": rows[0]["label"]}
    )
    rows[3]["label"] = str(mr / "labelsTr" / "mr_003.nii.gz")
    rows[3]["image"] = [str(mr / "imagesTr" / f"mr_003_000{c}.nii.gz") for c in range(2)]
    data = DataConfig(root=mr, layout="table", cases=rows, in_channels=2, num_classes=3)
    cases, bad = build_datalist(data, spatial_dims=3)
    assert bad == [] and [len(c.images) for c in cases] == [2, 2, 2, 2]
    one = DataConfig(root=mr, layout="table", cases=rows[:1], in_channels=3, num_classes=3)
    with pytest.raises(DataError, match="image has 2 channel\\(s\\), 3 expected"):
        build_datalist(one, spatial_dims=3)


def test_one_image_under_two_cases_is_refused_by_path_and_by_content(mr, tmp_path):
    label = str(mr / "labelsTr" / "mr_000.nii.gz")
    same = str(mr / "imagesTr" / "mr_000_0000.nii.gz")
    shutil.copy(same, tmp_path / "copy.nii.gz")
    for other in (same, str(tmp_path / "copy.nii.gz")):
        rows = [{"id": "a", "image": same, "label": label}, {"id": "b", "image": other, "label": label}]
        data = DataConfig(root=mr, layout="table", cases=rows, in_channels=1, num_classes=3)
        with pytest.raises(DataError, match="one image serves two cases.*\n  a and b"):
            build_datalist(data, spatial_dims=3)


@pytest.mark.parametrize("writer", [write_mr_nnunet, write_rgb_nnunet])
def test_the_data_sets_made_here_pass_nnunet_own_integrity_check(tmp_path, writer):
    verify = pytest.importorskip(
        "nnunetv2.experiment_planning.verify_dataset_integrity",
        reason="nnU-Net not installed (the plan-compare extra: pip install 'medseg[plan-compare]')",
    )
    root = writer(tmp_path / "Dataset104_Check", n_train=4, n_test=1)
    verify.verify_dataset_integrity(str(root), num_processes=1)  # raises on any fault
