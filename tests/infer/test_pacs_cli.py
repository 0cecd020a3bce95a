"""`medseg predict --input dicomweb+...` through the real command line: a PACS that refuses, stays
silent or trickles, URLs with credentials in every awkward form, and malformed URLs. Each ends with
one line on stderr and exit code 1, in bounded time, and no credential in stderr (the log included)
or in any file under the output folder.

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
    """``medseg predict`` in a process of its own: exit code, stderr and seconds taken."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "medseg", "predict", "-m", str(model), "-i", url, "-o", str(out), *args]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=out.parent)
    return done.returncode, done.stderr, time.perf_counter() - t0


def no_secret_under(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")] if folder.exists() else []:
        assert SECRET not in path.name
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def error_line(stderr: str) -> str:
    (line,) = [x for x in stderr.splitlines() if x.startswith("error: ")]
    return line


@pytest.mark.parametrize(
    "userinfo",
    ["alice:FAKE/PW-333", "alice:FAKE@PW:44", "al%40ice:FAKE%2FPW%3A55", "alice:FAKE:66/x@y", "FAKE-user"],
)
def test_credentials_in_a_url_never_reach_the_error_line_the_log_or_a_file(model, tmp_path, userinfo):
    from ..io.dicomweb_server import refusing_port

    with refusing_port() as port:
        url = f"dicomweb+http://{userinfo}@127.0.0.1:{port}/dicom-web"
        code, stderr, _ = predict(model, url, tmp_path / "o")
    assert code == 1 and SECRET not in stderr and "Traceback" not in stderr, stderr
    assert error_line(stderr).startswith(f"error: dicomweb+http://127.0.0.1:{port}/dicom-web: ")
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
    code, stderr, _ = predict(model, url, tmp_path / "o")
    assert code == 1 and error_line(stderr).startswith(says) and SECRET not in stderr, stderr
    no_secret_under(tmp_path / "o")
