"""Careless command lines: each gets one clear error naming the option or folder, exit code 1."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.io.raster import write_png

runner = CliRunner()


@pytest.fixture
def masks(tmp_path):
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12] = 255
        write_png(tmp_path / folder / "case1.png", mask)
    return tmp_path


@pytest.mark.parametrize("tolerance", ["0", "-1", "nan", "inf", "2,-3"])
def test_evaluate_refuses_a_tolerance_that_is_not_positive(masks, tolerance):
    args = ["evaluate", "--pred", str(masks / "pred"), "--ref", str(masks / "ref"), "--out", str(masks / "o")]
    result = runner.invoke(app, [*args, f"--tolerance={tolerance}"])
    assert result.exit_code == 1 and "--tolerance" in result.output and "positive" in result.output
    assert not (masks / "o").exists()


def test_evaluate_refuses_an_out_that_is_a_file(masks):
    (masks / "taken.txt").write_text("keep me")
    args = ["evaluate", "--pred", str(masks / "pred"), "--ref", str(masks / "ref")]
    result = runner.invoke(app, [*args, "--out", str(masks / "taken.txt")])
    assert result.exit_code == 1 and "is a file" in result.output
    assert (masks / "taken.txt").read_text() == "keep me"
    result = runner.invoke(app, [*args, "--out", str(masks / "o")])
    assert result.exit_code == 0 and "Dice 1.0000" in result.output


def test_report_on_a_missing_folder_says_so(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "folder not found" in result.output
