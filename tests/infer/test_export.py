"""`medseg export`: TorchScript and ONNX files give the PyTorch ensemble's output to 1e-4."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.infer.export import SoftmaxEnsemble, example_input, export_model
from medseg.tracking.models import load_bundle

from .conftest import untrained_run_dir

TINY = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
CASES = {
    "2d": ("demo.yaml", [*TINY, "transforms.spatial_size=[32, 48]"]),
    "3d": ("ct.yaml", [*TINY, "transforms.preprocess=[]", "transforms.patch_size=[16, 16, 8]"]),
}


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:DeprecationWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_exported_model_matches_pytorch(case, fmt, tmp_path):
    pipeline, overrides = CASES[case]
    bundle = load_bundle(str(untrained_run_dir(pipeline, overrides, tmp_path / "run")))
    out = export_model(bundle, fmt, tmp_path / f"model.{fmt}")
    reference = SoftmaxEnsemble(bundle.load(torch.device("cpu"))).eval()
    x = example_input(bundle, batch=2) * 3  # another batch size and other values than at export
    with torch.no_grad():
        expected = reference(x).numpy()
    if fmt == "torchscript":
        with torch.no_grad():
            got = torch.jit.load(str(out))(x).numpy()
    else:
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert got.shape == expected.shape == (2, bundle.cfg.data.num_classes, *bundle.cfg.roi_size)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-4)  # probabilities
    info = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert info["folds"] == [0, 1] and info["input"]["shape"][1:] == list(x.shape[1:])
    assert (tmp_path / f"model.{fmt}.config.yaml").is_file()


def test_export_command(tmp_path):
    from typer.testing import CliRunner

    from medseg.cli import app

    run_dir = untrained_run_dir(*CASES["2d"], tmp_path / "run")
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "torchscript", "--fold", "1"])
    assert result.exit_code == 0, result.output
    info = json.loads((run_dir / "export" / "model.pt.json").read_text())
    assert info["folds"] == [1]
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "tflite"])
    assert result.exit_code == 1 and "expected one of torchscript, onnx" in result.output


Exported = dict[str, tuple[Path, subprocess.CompletedProcess[str]]]  # per case: its folder, its process


@pytest.fixture(scope="module")
def onnx_exports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """`medseg export --format onnx` of each case's run folder, as the command line runs it, the
    two processes started together (each mostly one core's Python start-up and tracing); per case,
    its folder and its finished process. A process left running is stopped by its process id."""
    started = {}
    for case in sorted(CASES):
        tmp = tmp_path_factory.mktemp(f"onnx_{case}")
        run_dir = untrained_run_dir(*CASES[case], tmp / "run")
        cmd = [sys.executable, "-m", "medseg", "export", str(run_dir), "--format", "onnx",
               "--out", str(tmp / "m.onnx")]  # fmt: skip
        started[case] = tmp, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield {case: (tmp, _finished(proc)) for case, (tmp, proc) in started.items()}
    finally:
        for _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _finished(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_export_is_quiet_and_says_how_to_rebuild_the_preprocessing(case, onnx_exports):
    """`medseg export --format onnx` prints its own line, not the exporter's (about 160 before), and
    the JSON gives the axis order and the resize or resampling mode a user rebuilds the input with."""
    tmp_path, proc = onnx_exports[case]
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    own = re.compile(r"^(exported: |\d\d:\d\d:\d\d INFO model: )")
    assert len(lines) == 2 and all(own.match(ln) for ln in lines), lines  # medseg's own lines only
    pre = json.loads((tmp_path / "m.onnx.json").read_text())["preprocessing"]
    if case == "2d":
        assert pre["axes"] == ["N", "C", "row", "column"]
        assert pre["resize"] == {"size": [32, 48], "library": "torch.nn.functional.interpolate",
                                 "mode": "bilinear", "align_corners": False, "antialias": False}  # fmt: skip
    else:
        assert pre["axes"] == ["N", "C", "x", "y", "z"] and "RAS+" in pre["axis_order"]
        assert pre["resample"]["mode"] == "trilinear" and pre["resample"]["spacing_mm"] == [1.5, 1.5, 3.0]
    assert (
        pre["sliding_window"]["roi_size"]
        == json.loads((tmp_path / "m.onnx.json").read_text())["input"]["shape"][2:]
    )
