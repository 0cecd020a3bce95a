"""Bad input end to end: a clear error naming the case (never a traceback) or a recorded skip, and
nothing finished earlier is lost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.errors import MedsegError
from medseg.io.nifti import write_nifti

ROOT = Path(__file__).resolve().parents[2]


def _ct_table(tmp_path: Path) -> Path:
    from medseg.config.models import DataConfig, SyntheticConfig
    from medseg.data.synthetic_ct import generate_ct_dataset

    root = tmp_path / "ct"
    generate_ct_dataset(
        DataConfig(root=root, layout="table"),
        SyntheticConfig(kind="ct", n_cases=4, height=32, width=32, depth=8),
    )
    return root


def _run(args: list[str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["run", str(ROOT / "pipelines" / "ct.yaml"), *args])


def _ct_args(root: Path, out: Path) -> list[str]:
    return [
        "--set", f"data.root={root}", "--set", "data.cases=null", "--set", f"output_dir={out}",
        "--set", "data.num_classes=3", "--set", "data.labels={liver: 5, spleen: 1}",
        "--set", "evaluate.nsd_tolerance=[2.0, 2.0]", "--set", "transforms.spacing=[3.0, 3.0, 3.0]",
        "--set", "transforms.patch_size=[8, 8, 8]", "--set", "train.epochs=1",
        "--set", "model.args={channels: [4, 8], strides: [2], num_res_units: 0}",
        "--set", "preview.n_draws=1", "--set", "evaluate.n_worst=1",
    ]  # fmt: skip


def test_nan_voxels_truncated_dicom_and_label_on_another_grid_are_named(tmp_path):
    root = _ct_table(tmp_path)
    import nibabel as nib

    img = nib.load(str(root / "imagesTr" / "ct_001.nii.gz"))
    image = np.asarray(img.dataobj).astype(np.float32)
    image[3, 3, 3] = np.nan
    write_nifti(root / "imagesTr" / "ct_001.nii.gz", image, img.affine)
    lab = nib.load(str(root / "labelsTr" / "ct_002.nii.gz"))
    write_nifti(root / "labelsTr" / "ct_002.nii.gz", np.zeros((32, 32, 7), np.uint8), lab.affine)
    first = sorted((root / "dicom" / "ct_000").glob("*.dcm"))[3]
    first.write_bytes(first.read_bytes()[:-100])
    result = _run(_ct_args(root, tmp_path / "run"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "3 bad case(s)" in result.output
    assert "ct_000: <p" in result.output and "cannot decode the pixel data" in result.output
    assert "slice_0003" not in result.output  # DICOM file names are shown as pseudonyms
    assert "ct_001: image has 1 NaN or infinite voxels" in result.output
    assert "ct_002: image grid (32, 32, 8) but label grid (32, 32, 7)" in result.output
    assert not (tmp_path / "run" / "fold_0").exists()  # nothing half-started


def test_transform_errors_reach_the_user_unwrapped(tmp_path, monkeypatch):
    """A DataError raised inside a MONAI transform (in CacheDataset) is shown as itself."""
    from medseg.errors import DataError

    root = _ct_table(tmp_path)

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise DataError("case.nii.gz: cannot read the voxel data (truncated)")

    monkeypatch.setattr("medseg.transforms.loader.read_channels", broken)
    result = _run(
        [*_ct_args(root, tmp_path / "run"), "--set", "split.n_folds=2", "--set", "train.val_fraction=0"]
    )
    assert result.exit_code == 1 and "error: case.nii.gz: cannot read the voxel data" in result.output
    assert "Traceback" not in result.output


def test_path_leaving_data_root_is_refused(tmp_path):
    from medseg.config.models import DataConfig
    from medseg.data.datalist import build_datalist

    rows = [{"id": "a", "image": "../outside.nii.gz", "label": "x.nii.gz"}]
    (tmp_path / "root").mkdir()
    with pytest.raises(MedsegError, match="leads outside data.root"):
        build_datalist(DataConfig(root=tmp_path / "root", layout="table", cases=rows), spatial_dims=3)


def test_full_disk_in_a_later_fold_keeps_the_earlier_one_and_the_rerun_finishes(
    tmp_path, synthetic_root, monkeypatch
):
    import medseg.train.loop as loop
    from medseg.pipeline import run

    from ..conftest import study_runs, tiny_config

    cfg = tiny_config(
        synthetic_root, tmp_path / "run", train={"epochs": 2, "batch_size": 4, "val_fraction": 0.2}
    )
    real_save = loop.save_checkpoint

    def failing(path, state):  # type: ignore[no-untyped-def]
        if "fold_1" in str(path):
            raise MedsegError(f"{path}: cannot write the checkpoint (No space left on device)")
        real_save(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", failing)
    with pytest.raises(MedsegError, match="No space left"):
        run(cfg)
    monkeypatch.undo()
    fold0 = (tmp_path / "run" / "fold_0" / "metrics.csv").read_text()
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())
    assert state["folds"]["0"]["done_epochs"] == 2
    run(cfg)
    assert (tmp_path / "run" / "fold_0" / "metrics.csv").read_text() == fold0  # kept, not redone
    assert (tmp_path / "run" / "fold_1" / "metrics.csv").is_file()
    client, runs = study_runs(tmp_path / "run")
    assert sorted(r.data.tags.get("medseg.kind") for r in runs) == ["fold", "fold", "pipeline"]
    assert all(r.info.status == "FINISHED" for r in runs)
