from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from medseg.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys; from medseg.cli import app; "
        "heavy = [m for m in ('torch', 'monai', 'mlflow', 'matplotlib') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "validate", "preview", "report", "evaluate", "compare", "predict", "export"):
        assert command in result.output


def test_validate_show_prints_resolved_config() -> None:
    result = runner.invoke(
        app, ["validate", str(ROOT / "pipelines" / "isic.yaml"), "--show", "--set", "train.epochs=4"]
    )
    assert result.exit_code == 0, result.output
    assert "epochs: 4" in result.output
    assert "name: UNet" in result.output


def test_validate_typo_gives_clean_error_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: x\noutput_dir: o\ndata: {root: d}\ntrain: {epoch: 2}\n")
    result = runner.invoke(app, ["validate", str(tmp_path / "p.yaml")])
    assert result.exit_code == 1
    assert "did you mean train.epochs?" in result.output
    assert "Traceback" not in result.output


def test_run_with_missing_data_folder_names_it(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: x\noutput_dir: out\ndata: {root: nowhere}\ntracking: {enabled: false}\n"
    )
    result = runner.invoke(app, ["run", str(tmp_path / "p.yaml")])
    assert result.exit_code == 1
    assert f"data.root: folder '{tmp_path / 'nowhere'}' not found" in result.output


def test_a_missing_data_folder_is_refused_before_monai_and_torch_are_imported(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("name: x\noutput_dir: out\ndata: {root: nowhere}\n")
    probe = (
        "import sys\nfrom medseg.cli import app\ntry:\n    app(['run', sys.argv[1], '--stage', 'folds'])\n"
        "except SystemExit as end:\n"
        "    print('exit', end.code, 'monai' in sys.modules, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "p.yaml")], capture_output=True, text=True, timeout=120
    )
    assert "exit 1 False False" in done.stdout, done.stdout + done.stderr
    assert f"data.root: folder '{tmp_path / 'nowhere'}' not found" in done.stdout + done.stderr


def test_predict_bad_arguments_name_what_is_wrong(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    result = runner.invoke(
        app, ["predict", "-m", str(tmp_path), "-i", str(inputs), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "no config.yaml" in result.output and "Traceback" not in result.output
    from tests.infer.conftest import untrained_run_dir

    run_dir = untrained_run_dir("demo.yaml", ["transforms.spatial_size=[32, 32]"], tmp_path / "run", folds=1)
    args = ["predict", "-m", str(run_dir), "-o", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "-i", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and f"--input {tmp_path / 'nowhere'}: folder not found" in result.output
    result = runner.invoke(app, [*args, "-i", str(inputs), "--fold", "3"])
    assert result.exit_code == 1 and "fold(s) [3] not finished" in result.output
    result = runner.invoke(app, [*args, "-i", str(inputs), "--device", "tpu"])
    assert result.exit_code == 1 and "--device tpu" in result.output


def test_version_prints_the_package_version() -> None:
    from medseg import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"medseg {__version__}"


def _wrapped_error_app(monkeypatch, error: Exception) -> None:
    """Make `medseg report` raise ``error`` from inside the stage."""
    import medseg.report.pages as pages

    def broken(run_dir, title=None):  # type: ignore[no-untyped-def]
        raise error

    monkeypatch.setattr(pages, "write_report", broken)


def test_every_command_unwraps_a_medseg_error_that_monai_wrapped(monkeypatch, tmp_path: Path) -> None:
    from medseg.errors import DataError

    try:  # as MONAI re-raises an error from inside a transform
        try:
            raise DataError("case_7: image has NaN values")
        except DataError as inner:
            raise RuntimeError("applying transform <LoadCased>") from inner
    except RuntimeError as wrapped:
        _wrapped_error_app(monkeypatch, wrapped)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == "error: case_7: image has NaN values"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, tmp_path: Path) -> None:
    _wrapped_error_app(monkeypatch, ZeroDivisionError("division by zero"))
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 3 and "Traceback" not in result.output
    assert "error: unexpected ZeroDivisionError: division by zero" in result.output
    assert "--debug" in result.output
    result = runner.invoke(app, ["--debug", "report", str(tmp_path)])
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.output and "ZeroDivisionError" in result.output


def test_report_on_an_empty_folder_is_a_clean_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "no fold_*/metrics.csv found" in result.output


def test_ctrl_c_exits_130_with_what_is_kept(monkeypatch, tmp_path: Path) -> None:
    _wrapped_error_app(monkeypatch, KeyboardInterrupt())
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 130 and "interrupted" in result.output
