"""`medseg predict --input dicomweb+...` through the real command line: a PACS that refuses, stays
silent or trickles, URLs with credentials in every awkward form, and malformed URLs. Each ends with
one line on stderr and exit code 1, in bounded time, and no credential in stderr (the log included),
stdout or any file under the output folder.

The PACS here is a socket server of the test's own on 127.0.0.1 (:mod:`tests.io.dicomweb_server`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT
from .conftest import untrained_run_dir

STATS = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 40, std: 300}}]"
TINY_3D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
SECRET = "FAKE"  # every password below holds it


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return untrained_run_dir("ct.yaml", [STATS, *TINY_3D], tmp_path_factory.mktemp("model") / "run", folds=1)


def predict(model: Path, url: str, out: Path, *args: str, timeout: float = 120) -> tuple[int, str, float]:
    """``medseg predict`` in a process of its own: exit code, all it printed (stderr, with the log,
    then stdout) and seconds taken."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "medseg", "predict", "-m", str(model), "-i", url, "-o", str(out), *args]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=out.parent)
    return done.returncode, done.stderr + done.stdout, time.perf_counter() - t0


def no_secret_under(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")] if folder.exists() else []:
        assert SECRET not in path.name
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def error_line(printed: str) -> str:
    (line,) = [x for x in printed.splitlines() if x.startswith("error: ")]
    return line


@pytest.mark.parametrize(
    "userinfo",
    ["alice:FAKE/PW-333", "alice:FAKE@PW:44", "al%40ice:FAKE%2FPW%3A55", "alice:FAKE:66/x@y", "FAKE-user"],
)
def test_credentials_in_a_url_never_reach_the_error_line_the_log_or_a_file(model, tmp_path, userinfo):
    from ..io.dicomweb_server import refusing_port

    with refusing_port() as port:
        url = f"dicomweb+http://{userinfo}@127.0.0.1:{port}/dicom-web"
        code, printed, _ = predict(model, url, tmp_path / "o")
    assert code == 1 and SECRET not in printed and "Traceback" not in printed, printed
    assert error_line(printed).startswith(f"error: dicomweb+http://127.0.0.1:{port}/dicom-web: ")
    no_secret_under(tmp_path / "o")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("dicomweb+ftp://a:FAKE/1@127.0.0.1:1/x", "error: --input dicomweb+ftp://127.0.0.1:1/x: expected "),
        ("dicomweb+http://", "error: --input dicomweb+http://: no host; expected dicomweb+http://"),
        ("dicomweb+http://alice:FAKE/2@", "error: --input dicomweb+http://: no host"),
        ("dicomweb+http://h:70000/x", "error: --input dicomweb+http://h:70000/x: the port must be"),
    ],
)
def test_a_malformed_url_is_one_clear_line(model, tmp_path, url, says):
    code, printed, _ = predict(model, url, tmp_path / "o")
    assert code == 1 and error_line(printed).startswith(says) and SECRET not in printed, printed
    no_secret_under(tmp_path / "o")


FAST = ["--set", "predict.dicomweb.timeout=2", "--set", "predict.dicomweb.retries=0"]


@pytest.mark.parametrize("mode", ["silent", "trickle", "trickle_headers"])
def test_a_silent_or_trickling_pacs_ends_within_the_timeout_before_any_model_loads(model, tmp_path, mode):
    from ..io.dicomweb_server import FakeDicomweb

    with FakeDicomweb(mode, interval=1.0) as server:
        url = f"dicomweb+http://alice:FAKE/PW-1@127.0.0.1:{server.port}/dicom-web"
        code, printed, seconds = predict(model, url, tmp_path / "o", *FAST)
    assert code == 1 and SECRET not in printed, printed
    assert error_line(printed) == (
        f"error: dicomweb+http://127.0.0.1:{server.port}/dicom-web: the PACS does not answer while "
        "searching for studies: no complete answer within 2 s; check that it runs and is not "
        "overloaded, or raise predict.dicomweb.timeout"
    )
    assert 2 <= seconds < 2 + 3, seconds
    no_secret_under(tmp_path / "o")


def test_a_refused_connection_fails_at_once_with_the_right_advice(model, tmp_path):
    from ..io.dicomweb_server import refusing_port

    with refusing_port() as port:  # the default timeout and retries: no waiting, no retry
        url = f"dicomweb+http://alice:FAKE@/:x@127.0.0.1:{port}/dicom-web"
        code, printed, seconds = predict(model, url, tmp_path / "o")
    assert code == 1 and error_line(printed) == (
        f"error: dicomweb+http://127.0.0.1:{port}/dicom-web: the PACS does not answer while searching "
        f"for studies: nothing listens at 127.0.0.1:{port}; check that the PACS runs and the URL"
    )
    assert seconds < 3, seconds
    assert SECRET not in printed
    no_secret_under(tmp_path / "o")


def test_a_missing_token_file_or_an_output_that_is_a_file_is_named_before_any_model_loads(model, tmp_path):
    from ..io.dicomweb_server import FakeDicomweb

    token = tmp_path / "no-token"
    with FakeDicomweb("silent") as server:
        args = ("--set", f"predict.dicomweb.token_file={token}")
        code, printed, seconds = predict(model, server.url, tmp_path / "o", *args)
        assert server.requests == 0
    assert (
        code == 1
        and error_line(printed)
        == f"error: DICOMweb token file {token}: cannot be read (No such file or directory)"
    )
    assert seconds < 3, seconds
    (tmp_path / "file").write_text("x")
    code, printed, seconds = predict(model, server.url, tmp_path / "file")
    assert code == 1 and error_line(printed) == (
        f"error: --output {tmp_path / 'file'}: not a folder; give a folder"
    )
    assert seconds < 3, seconds
    code, printed, _ = predict(model, str(tmp_path / "nowhere"), tmp_path / "o", "--send", server.url)
    assert code == 1 and error_line(printed).startswith("error: --send stores results in a PACS read with")


def test_credentials_are_checked_in_a_second_and_a_url_password_with_slash_and_at_works(
    model, tmp_path, monkeypatch
):
    from .test_pacs import Orthanc

    server = Orthanc(tmp_path / "orthanc-home", users={"alice": "FAKE/right@pw"})
    try:
        refused = f"error: {server.url}: searching for studies was refused (HTTP 401); check the credentials"
        settings = [
            "--set",
            "predict.dicomweb.username=alice",
            "--set",
            "predict.dicomweb.password_env=PACS_PW",
        ]
        monkeypatch.setenv("PACS_PW", "FAKE-wrong")
        code, printed, seconds = predict(model, server.url, tmp_path / "o", *settings)
        assert code == 1 and error_line(printed) == refused and SECRET not in printed, printed
        assert seconds < 3, seconds
        code, printed, seconds = predict(
            model, server.url.replace("//", "//alice:FAKE%2Fwrong@"), tmp_path / "o"
        )
        assert code == 1 and error_line(printed) == refused and SECRET not in printed, printed
        right = server.url.replace("//", "//alice:FAKE%2Fright%40pw@")  # "/" and "@" percent-encoded
        code, printed, _ = predict(model, right, tmp_path / "o")
        assert code == 0 and "done 0, done earlier 0, skipped 0, failed 0" in printed, printed
        assert SECRET not in printed
        no_secret_under(tmp_path / "o")
    finally:
        server.stop()


def test_retries_are_not_logged_between_medsegs_lines_only_the_error_is_printed(model, tmp_path):
    from ..io.dicomweb_server import FakeDicomweb

    with FakeDicomweb("hangup") as server:  # urllib3 retries a dropped connection, and would say so
        code, printed, seconds = predict(
            model, server.url, tmp_path / "o", "--set", "predict.dicomweb.retries=2"
        )
    assert server.requests == 3 and code == 1 and seconds < 5
    assert printed.strip() == (
        f"error: {server.url}: the PACS does not answer while searching for studies: the connection to "
        f"127.0.0.1:{server.port} broke (ConnectionError); check that the PACS runs and the URL"
    )


def test_a_rerun_counts_the_series_done_earlier_and_summary_json_keeps_the_first_run(model, tmp_path):
    import json

    from .test_pacs import Orthanc, _series_copy

    server = Orthanc(tmp_path / "orthanc-home")
    try:
        _series_copy(tmp_path / "series", 11)
        server.upload(tmp_path / "series")
        out = tmp_path / "out"
        code, printed, _ = predict(model, server.url, out, "--send", server.url)
        assert code == 0 and "done 1, done earlier 0, skipped 0, failed 0" in printed, printed
        assert (
            "PACS: 1 series found, 0 done earlier, 1 fetched; 1 SEG(s) sent, 0 already in the PACS, 0 failed"
            in printed
        )
        code, printed, _ = predict(model, server.url, out, "--send", server.url, "--modality", "CT")
    finally:
        server.stop()
    assert code == 0 and "done 0, done earlier 1, skipped 0, failed 0" in printed, printed
    assert (
        "PACS: 1 series found, 1 done earlier, 0 fetched; 0 SEG(s) sent, 0 already in the PACS, 0 failed"
        in printed
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["done_earlier"], summary["pacs"]["done_earlier"]) == (0, 1, 1)
    (first,) = summary["earlier_runs"]
    assert (first["done"], first["done_earlier"], first["pacs"]["sent"]) == (1, 0, 1)
    assert "earlier_runs" not in first and first["finished"] <= summary["finished"]


def test_the_early_check_reads_the_settings_the_pipeline_loader_would(model):
    from medseg.config.load import load_pipeline
    from medseg.infer.pacs import dicomweb_settings

    for overrides in (
        ["predict.dicomweb.timeout=2", "predict.dicomweb.username=ann", "train.epochs=1"],
        ["predict.dicomweb={username: bob, password_env: PW, retries: 0}"],
        ["predict={dicomweb: {token_file: /run/secrets/t}}", "predict.dicomweb.timeout=5"],
    ):
        expected = load_pipeline(model / "config.yaml", overrides).predict.dicomweb
        assert dicomweb_settings(model / "config.yaml", overrides) == expected
    assert (
        dicomweb_settings(model / "config.yaml", ["predict.dicomweb.timeout=soon"]) is None
    )  # left to the loader
    assert dicomweb_settings(model / "missing.yaml", []) is None
