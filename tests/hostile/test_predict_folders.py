"""Where `medseg predict` reads and writes: a missing model folder or input, an output that is a file
or lies inside the input, answered before torch and the models load; no `.locks` left by a failed
command; control characters of a name escaped in the error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medseg.cli import app

from ..conftest import ROOT
from ..infer.conftest import untrained_run_dir
from ..infer.test_predict_2d import TINY_2D

runner = CliRunner()

# runs the command in a fresh interpreter, then says which heavy libraries it imported
PROBE = """
import json, sys
from typer.testing import CliRunner
from medseg.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"code": result.exit_code, "output": result.output,
                  "loaded": sorted(m for m in ("torch", "monai", "mlflow") if m in sys.modules)}))
"""


def _probe(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(folder / "a.png")
    return folder


def test_a_missing_input_folder_is_refused_before_any_model_loads(tmp_path):
    out = tmp_path / "out"
    result = _probe("predict", "-m", str(tmp_path / "run"), "-i", str(tmp_path / "nowhere"), "-o", str(out))
    assert result["code"] == 1 and f"--input {tmp_path / 'nowhere'}: folder not found" in result["output"]
    assert result["loaded"] == [] and not out.exists()


def test_a_run_folder_without_settings_is_refused_before_any_model_loads(tmp_path, inputs):
    out = tmp_path / "out"
    result = _probe("predict", "-m", str(tmp_path / "no-run"), "-i", str(inputs), "-o", str(out))
    assert result["code"] == 1 and f"{tmp_path / 'no-run'}: no config.yaml" in result["output"], result
    assert result["loaded"] == [] and not out.exists()


def test_an_output_that_is_a_file_is_refused_before_any_model_loads(tmp_path, inputs):
    taken = tmp_path / "taken.csv"
    taken.write_text("keep me")
    for out in (taken, taken / "below"):
        result = _probe("predict", "-m", str(tmp_path / "run"), "-i", str(inputs), "-o", str(out))
        assert result["code"] == 1 and "not a folder" in result["output"], result
        assert result["loaded"] == []
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize("where", [".", "out", "deep/er/out"])
def test_an_output_folder_in_the_input_folder_is_refused(tmp_path, inputs, where):
    """A second run would segment the first run's masks and overlays as inputs."""
    out = (inputs / where) if where != "." else inputs
    result = runner.invoke(app, ["predict", "-m", str(tmp_path / "run"), "-i", str(inputs), "-o", str(out)])
    assert result.exit_code == 1 and "a later run would segment these outputs as inputs" in result.output
    assert sorted(p.name for p in inputs.iterdir()) == ["a.png"]  # nothing written there


def test_a_failed_predict_leaves_no_locks_and_no_folder_it_made(tmp_path, inputs):
    out = tmp_path / "out"
    broken = tmp_path / "broken-run"  # fails once the model lock is taken, loading its settings
    broken.mkdir()
    (broken / "config.yaml").write_text("name: broken\n")
    result = runner.invoke(app, ["predict", "-m", str(broken), "-i", str(inputs), "-o", str(out)])
    assert result.exit_code == 1 and not out.exists(), result.output
    grey = [*TINY_2D, "transforms.spatial_size=[32, 32]"]
    run_dir = untrained_run_dir("mammo.yaml", grey, tmp_path / "run")
    (out / "earlier.txt").parent.mkdir()
    (out / "earlier.txt").write_text("an earlier batch's file")
    # a grey model given RGB pictures: every input fails, the command ends with exit code 2
    result = runner.invoke(app, ["predict", "-m", str(run_dir), "-i", str(inputs), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert not (out / ".locks").exists() and (out / "earlier.txt").is_file()
    assert (out / "manifest.csv").is_file()  # what the command found stays


def test_a_control_character_in_a_name_is_escaped_in_the_error_line(tmp_path):
    """A crafted folder name cannot clear the terminal or move its cursor."""
    crafted = tmp_path / "x\x1b[2Jy\x07"
    result = runner.invoke(
        app, ["predict", "-m", str(tmp_path / "run"), "-i", str(crafted), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "folder not found" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "x\\x1b[2Jy\\x07" in result.output
