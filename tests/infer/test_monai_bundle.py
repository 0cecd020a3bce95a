"""`medseg export --format bundle`: MONAI bundles that MONAI alone verifies, runs and exports.

The bundle checks run in fresh Python processes that never import medseg (each asserts it):
MONAI's `verify_metadata` and `verify_net_in_out`, `python -m monai.bundle run` on NIfTI and PNG
inputs (label maps voxel for voxel equal to `medseg predict`'s for the same run), and the
TorchScript of `ckpt_export` against the PyTorch network built from the bundle's configs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app
from medseg.config.load import load_pipeline
from medseg.errors import MedsegError
from medseg.infer.batch import predict_folder
from medseg.tracking.models import load_bundle

from ..conftest import ROOT
from .conftest import CPU, untrained_run_dir

for needed in ("ignite", "fire", "jsonschema"):  # the `bundle` extra: MONAI's evaluator, CLI and verifier
    pytest.importorskip(needed, reason=f"{needed} not installed: pip install 'medseg[bundle]'")

TINY_2D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
NO_MEDSEG = "assert not [m for m in sys.modules if m.split('.')[0] == 'medseg'], 'medseg was imported'"
# MONAI verify_metadata and verify_net_in_out on a bundle, and metadata without a required key
VERIFY = """
import copy, json
from monai.bundle import verify_metadata, verify_net_in_out
verify_metadata(meta_file="configs/metadata.json", filepath="configs/metadata_schema.json")
verify_net_in_out(net_id="network_def", meta_file="configs/metadata.json",
                  config_file="configs/inference.json", device="cpu")
meta = json.load(open("configs/metadata.json"))
for key in ("network_data_format", "monai_version"):
    broken = copy.deepcopy(meta)
    del broken[key]
    json.dump(broken, open("broken.json", "w"))
    try:
        verify_metadata(meta_file="broken.json", filepath="configs/metadata_schema.json")
    except ValueError:
        print("refused without", key)
"""
# the network MONAI's parser builds from a bundle's configs against its TorchScript (ckpt_export)
TORCHSCRIPT = """
import json, torch
from monai.bundle import ConfigParser
parser = ConfigParser()
parser.read_config("configs/inference.json")
parser.read_meta("configs/metadata.json")
net = parser.get_parsed_content("network_def")
net.load_state_dict(torch.load("models/model.pt", weights_only=True))
net.eval()
extra = {"metadata.json": "", "inference.json": ""}
ts = torch.jit.load("models/model.ts", _extra_files=extra)
image = parser["_meta_#network_data_format#inputs#image"]
seeded = torch.Generator().manual_seed(1)
x = torch.randn(2, image["num_channels"], *image["spatial_shape"], generator=seeded)
with torch.no_grad():
    a, b = net(x), ts(x)
found = {"shape": list(a.shape), "diff": float((a - b).abs().max()),
         "config": sorted(json.loads(extra["inference.json"])),
         "meta": json.loads(extra["metadata.json"])}
print(json.dumps(found))
"""
CHECKS = {"ct_study": "ct_checks", "derm_study": "derm_checks"}  # each study's started checks


def start_monai_only(code: str, cwd: Path) -> subprocess.Popen[str]:
    """Start ``code`` in a fresh Python in ``cwd`` (a bundle folder), followed by the check that
    medseg was never imported there; :func:`monai_output` waits for it."""
    script = "import sys\n" + textwrap.dedent(code) + "\n" + NO_MEDSEG + "\n"
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def monai_output(proc: subprocess.Popen[str], timeout: int = 300) -> str:
    """What a :func:`start_monai_only` process printed, once it has ended without an error."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    return out


def start_bundle_run(bundle: Path, inputs: Path, outputs: Path, pattern: str) -> subprocess.Popen[str]:
    """``python -m monai.bundle run`` on ``inputs``, started in a process without medseg."""
    args = ["run", "--config_file", "configs/inference.json", "--dataset_dir", str(inputs),
            "--file_pattern", pattern, "--output_dir", str(outputs)]  # fmt: skip
    return start_monai_only(
        f"""
        import runpy
        sys.argv = ["monai.bundle", *{args!r}]
        try:
            runpy.run_module("monai.bundle", run_name="__main__")
        except SystemExit as stop:
            assert not stop.code, stop.code
        """,
        bundle,
    )


def export(run_dir: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(
        app, ["export", str(run_dir), "--format", "bundle", "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output
    assert "fill in its LICENSE" in result.output
    return out


@pytest.fixture(scope="module")
def ct_study(ct_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, bundle) of a 1-epoch, 2-fold run of pipelines/ct.yaml on synthetic CT: the
    session's ``ct_run`` (tests/infer/conftest.py, the same run the prediction tests use; the
    export only reads it)."""
    return ct_run, export(ct_run, tmp_path_factory.mktemp("ct_bundle") / "ct_segmentation")


@pytest.fixture(scope="module")
def derm_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run folder, bundle) of a 1-epoch, 2-fold run of pipelines/demo.yaml: RGB dermoscopy."""
    from medseg.pipeline import run

    tmp = tmp_path_factory.mktemp("derm_bundle")
    overrides = [
        f"output_dir={tmp / 'run'}", f"data.root={tmp / 'data'}",
        "data.synthetic={n_cases: 12, height: 48, width: 64, seed: 1}", "transforms.spatial_size=[32, 48]",
        "split.n_folds=2", "train.epochs=1", "train.batch_size=4", "train.val_fraction=0.2",
        "evaluate.n_worst=1", "preview.n_cases=1", "preview.n_draws=1", *TINY_2D,
    ]  # fmt: skip
    run_dir = run(load_pipeline(ROOT / "pipelines" / "demo.yaml", overrides))
    return run_dir, export(run_dir, tmp / "demo_segmentation")


@contextmanager
def reaped(procs: list[subprocess.Popen[str]]) -> Iterator[None]:
    """Whatever of ``procs`` a failing test left running is stopped, by its process id."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def started_checks(bundle: Path) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """VERIFY and TORCHSCRIPT on ``bundle``, started together (each mostly one core's Python
    start-up) as soon as the bundle is written; the tests wait for their own."""
    procs = {"verify": start_monai_only(VERIFY, bundle), "torchscript": start_monai_only(TORCHSCRIPT, bundle)}
    with reaped(list(procs.values())):
        yield procs


@pytest.fixture(scope="module")
def ct_checks(ct_study: tuple[Path, Path]) -> Iterator[dict[str, subprocess.Popen[str]]]:
    yield from started_checks(ct_study[1])


@pytest.fixture(scope="module")
def derm_checks(derm_study: tuple[Path, Path]) -> Iterator[dict[str, subprocess.Popen[str]]]:
    yield from started_checks(derm_study[1])


@pytest.mark.parametrize("study", ["ct_study", "derm_study"])
def test_files_and_monai_verifies_metadata_and_network(study, request):
    run_dir, bundle = request.getfixturevalue(study)
    names = ["LICENSE", "configs/inference.json", "configs/metadata.json", "configs/metadata_schema.json",
             "models/model.pt", "models/model.ts", "scripts/fold_stack.py", "docs/README.md"]  # fmt: skip
    for name in names:
        assert (bundle / name).is_file(), name
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    state = json.loads((run_dir / "run_state.json").read_text())
    assert meta["medseg"]["mlflow_run_id"] == state["parent_run_id"] and meta["medseg"]["folds"] == [0, 1]
    assert meta["medseg"]["run"] == run_dir.name
    assert not any(
        "$" in line and "medseg" in line for line in (bundle / "configs" / "inference.json").open()
    )
    readme = (bundle / "docs" / "README.md").read_text()
    assert "## Cross-validated results" in readme and "(figures/boxplots.png)" in readme
    assert (
        "Into MONAI Label and MONAI Deploy" in readme
        and (bundle / "docs" / "figures" / "boxplots.png").is_file()
    )
    out = monai_output(request.getfixturevalue(CHECKS[study])["verify"])
    assert "refused without network_data_format" in out and "refused without monai_version" in out


def test_bundle_run_on_nifti_equals_medseg_predict(ct_study, tmp_path):
    """Two synthetic CT volumes, one stored RAS and one LPS (reoriented and back), resampled from
    1.5 x 1.5 x 3 mm to 3 mm: the bundle's label maps are medseg predict's, voxel for voxel, also
    with the largest component of each class kept and holes filled."""
    run_dir, bundle = ct_study
    data = Path(json.loads((run_dir / "datalist.json").read_text())["root"])
    inputs = tmp_path / "in"
    inputs.mkdir()
    cases = ("ct_001", "ct_002")
    for case in cases:
        (inputs / f"{case}.nii.gz").write_bytes((data / "imagesTr" / f"{case}.nii.gz").read_bytes())
    post = ["infer.largest_component=true", "infer.fill_holes=true"]
    bundles = {
        "plain": bundle,
        "post": export(run_dir, tmp_path / "post_bundle", *(f"--set={s}" for s in post)),
    }
    # both bundle runs at once, medseg's predictions in this process meanwhile
    runs = {
        name: start_bundle_run(b, inputs, tmp_path / name / "bundle", "*.nii.gz")
        for name, b in bundles.items()
    }
    with reaped(list(runs.values())):
        for name, sets in (("plain", []), ("post", post)):
            predict_folder(
                load_bundle(str(run_dir), sets), inputs, tmp_path / name / "medseg", CPU, workers=0
            )
        for proc in runs.values():
            monai_output(proc)  # ended without an error, medseg never imported
    found = {}
    for name in runs:
        for case in cases:
            ours = nib.load(tmp_path / name / "medseg" / f"{case}.nii.gz")
            theirs = nib.load(tmp_path / name / "bundle" / f"{case}_seg.nii.gz")
            expected, got = np.asarray(ours.dataobj), np.asarray(theirs.dataobj)
            assert got.shape == expected.shape and got.dtype == np.uint8
            np.testing.assert_array_equal(got, expected)
            np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-4)
            assert len(np.unique(expected)) > 1  # the model predicts some foreground: a real comparison
            found[name, case] = expected
    assert any((found["plain", c] != found["post", c]).any() for c in cases)  # post-processing changed voxels


def test_bundle_run_on_png_equals_medseg_predict(derm_study, tmp_path):
    """An RGB PNG, and one whose EXIF orientation turns it upright: the bundle's PNGs are medseg
    predict's, pixel for pixel (0/255 for one class)."""
    run_dir, bundle = derm_study
    data = (
        Path(json.loads((run_dir / "datalist.json").read_text())["root"]) / "ISIC2018_Task1-2_Training_Input"
    )
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.open(data / "SYN0003.jpg").save(inputs / "plain.png")
    turned = Image.open(data / "SYN0005.jpg")
    exif = turned.getexif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    turned.save(inputs / "exif.png", exif=exif)
    proc = start_bundle_run(bundle, inputs, tmp_path / "bundle_out", "*.png")
    with reaped([proc]):
        predict_folder(
            load_bundle(str(run_dir)), inputs, tmp_path / "medseg_out", CPU, workers=0
        )  # meanwhile
        monai_output(proc)
    for case, shape in (("plain", (48, 64)), ("exif", (64, 48))):
        expected = np.asarray(Image.open(tmp_path / "medseg_out" / f"{case}.png"))
        got = np.asarray(Image.open(tmp_path / "bundle_out" / f"{case}_seg.png"))
        assert got.shape == expected.shape == shape
        np.testing.assert_array_equal(got, expected)
        assert set(np.unique(got)) <= {0, 255}


@pytest.mark.parametrize("study", ["ct_study", "derm_study"])
def test_ckpt_export_torchscript_equals_the_pytorch_network(study, request):
    """MONAI's parser builds the network from the bundle's configs and loads model.pt: its output
    is the TorchScript's (``ckpt_export``), whose extra files carry the configs."""
    _, bundle = request.getfixturevalue(study)
    out = monai_output(request.getfixturevalue(CHECKS[study])["torchscript"])
    found = json.loads(out.strip().splitlines()[-1])
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert found["diff"] <= 1e-4 and "network_def" in found["config"]
    for key in ("network_data_format", "medseg", "version"):  # what MONAI Deploy reads of extra/metadata.json
        assert found["meta"][key] == meta[key], key
    assert (
        found["shape"][1]
        == meta["network_data_format"]["outputs"]["pred"]["num_channels"]
        == 2 * 3 - (0 if study == "ct_study" else 2)
    )


def test_steps_without_a_monai_equivalent_are_refused(tmp_path):
    from medseg.report.monai_bundle import export_monai_bundle

    run_dir = untrained_run_dir("ct.yaml", [*TINY_2D, "transforms.patch_size=[16, 16, 8]"], tmp_path / "ct")
    cases = [{"id": "odd", "image": "odd.nii.gz", "shape": [37, 32, 12], "spacing": [0.977, 0.977, 2.0]}]
    (run_dir / "datalist.json").write_text(json.dumps({"cases": cases}))
    with pytest.raises(MedsegError, match=r"ClipZScored: no statistics"):
        export_monai_bundle(load_bundle(str(run_dir)), tmp_path / "b")
    stats = ["transforms.preprocess=[{ClipZScored: {lower: -100, upper: 300, mean: 40, std: 80}}]"]
    with pytest.raises(MedsegError, match=r"transforms.spacing \[1.5, 1.5, 3.0\]: case odd has 37 voxels"):
        export_monai_bundle(load_bundle(str(run_dir), stats), tmp_path / "b")
    with pytest.raises(MedsegError, match=r"infer.tta_flips: MONAI has no inferer averaging flips"):
        export_monai_bundle(load_bundle(str(run_dir), [*stats, "infer.tta_flips=true"]), tmp_path / "b")
    mammo = untrained_run_dir(
        "mammo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp_path / "mammo"
    )
    (mammo / "datalist.json").write_text(json.dumps({"cases": []}))
    with pytest.raises(MedsegError, match=r"data.mammography: the flip to one side"):
        export_monai_bundle(load_bundle(str(mammo)), tmp_path / "b")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_intensity_steps_compute_medseg_values(tmp_path):
    """ClipZScored and stacked CT windows as MONAI transforms give medseg's values to the bit."""
    from monai.bundle import ConfigParser
    from monai.data import MetaTensor

    from medseg.infer.monai_bundle.preprocess import intensity
    from medseg.registry import build_chain

    image = MetaTensor(torch.linspace(-1200, 1500, 4000).reshape(1, 10, 20, 20))
    for chain, channels in (
        ([{"ClipZScored": {"lower": -57.3, "upper": 412.9, "mean": 61.2, "std": 87.7}}], 1),
        ([{"CTWindowd": {"windows": ["soft_tissue", "lung", [350, 45.5]]}}], 3),
    ):
        sets = [f"output_dir={tmp_path}", f"transforms.preprocess={chain}", f"data.in_channels={channels}"]
        cfg = load_pipeline(ROOT / "pipelines" / "ct.yaml", sets)
        expected = {"image": image.clone()}
        for step in build_chain(cfg.transforms.preprocess, "preprocess"):
            expected = step(expected)
        parser = ConfigParser(
            {"image_key": "image", "pre": {"_target_": "Compose", "transforms": intensity(cfg)}}
        )
        got = parser.get_parsed_content("pre")({"image": image.clone()})
        assert set(got) == {"image"} and got["image"].shape == expected["image"].shape
        assert torch.equal(got["image"].as_tensor(), expected["image"].as_tensor())


def test_export_command_names_the_formats(tmp_path):
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 48]"], tmp_path / "run")
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "tflite"])
    assert result.exit_code == 1 and "expected one of torchscript, onnx, bundle" in result.output
