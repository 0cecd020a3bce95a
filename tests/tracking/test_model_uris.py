"""``--model runs:/...`` against a sqlite store that is not there, or not an MLflow store: one line
naming the file and the option, and no empty store created in its place."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli import app
from medseg.errors import MedsegError
from medseg.tracking.models import load_bundle


def test_a_missing_sqlite_store_is_named_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "mlflow.db"
    uri = f"sqlite:///{missing}"
    with pytest.raises(
        MedsegError, match=rf"--tracking-uri {uri}: no MLflow store at {missing}; give the store"
    ):
        load_bundle("runs:/0123abcd", tracking_uri=uri, download_dir=tmp_path / "dl")
    assert not missing.parent.exists()  # MLflow would have made an empty store there
    (tmp_path / "in").mkdir()
    args = ["predict", "--model", "runs:/0123abcd", "--tracking-uri", uri, "-i", str(tmp_path / "in")]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"no MLflow store at {missing}" in result.output and not missing.parent.exists()


def test_a_file_that_is_not_an_mlflow_store_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "mlflow.db"
    notes.write_text("not a database\n" * 50)
    with pytest.raises(MedsegError, match=r"mlflow.db: not an MLflow store \(file is not a database\)"):
        load_bundle("runs:/0123abcd", tracking_uri=f"sqlite:///{notes}", download_dir=tmp_path / "dl")
    assert notes.read_text() == "not a database\n" * 50  # left as it was
