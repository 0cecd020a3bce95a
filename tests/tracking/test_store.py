"""The run folder's MLflow store: `medseg ui` refuses a folder without one, clearly."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from medseg.cli import app
from medseg.tracking.store import relocate, training_view_url, ui_command


def test_ui_needs_the_sqlite_store_of_a_run_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ui", str(tmp_path)])
    assert result.exit_code == 1
    assert "no mlflow.db" in result.output and "Traceback" not in result.output
    assert relocate(tmp_path) == 0


def test_ui_runs_light_on_this_host_only(tmp_path: Path) -> None:
    cmd = ui_command(tmp_path, "127.0.0.1", 5123)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    url = training_view_url("http://127.0.0.1:5123", "3")
    assert url == "http://127.0.0.1:5123/#/experiments/3/runs?workflowType=machine_learning"
