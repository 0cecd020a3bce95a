"""`kill -9` in a `medseg predict --workers 2` batch. Of the parent: its worker processes die with
it, so no output appears that no manifest records. Of a worker: the batch does not hang, the inputs
that worker had fail with a reason that says what to do, and the same command run again completes."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..conftest import ROOT
from ..infer.conftest import untrained_run_dir
from ..infer.test_predict_2d import TINY_2D

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's"
)


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _rows(manifest: Path) -> int:
    try:
        return max(0, len(manifest.read_text().splitlines()) - 1)
    except OSError:
        return 0


def _pictures(folder: Path, n: int, height: int, width: int) -> Path:
    """``n`` pictures of random noise, p00.png, p01.png, ...: one encoded and copied, as encoding a
    large picture takes a tenth of a second or more and predicting does not depend on the pixels."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)).save(folder / "p00.png")
    for i in range(1, n):
        shutil.copyfile(folder / "p00.png", folder / f"p{i:02d}.png")
    return folder


def test_workers_die_with_a_parent_killed_by_sigkill(tmp_path):
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp_path / "run")
    inputs, out = _pictures(tmp_path / "in", 60, 900, 1200), tmp_path / "out"
    command = [sys.executable, "-m", "medseg", "predict", "-m", str(run_dir), "-i", str(inputs)]
    parent = subprocess.Popen(
        [*command, "-o", str(out), "--workers", "2", "--device", "cpu"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 180
        while _rows(out / "manifest.csv") < 2 and parent.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        workers = _children(parent.pid)
        assert parent.poll() is None and len(workers) >= 2, "the batch ended before the workers were seen"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
    deadline = time.time() + 20
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.05)
    left = [w for w in workers if _alive(w)]
    for w in left:  # the test's own clean-up, by process id
        os.kill(w, signal.SIGKILL)
    assert not left, "worker processes outlived their killed parent"
    written = sorted(p.name for p in out.iterdir())
    time.sleep(2)
    assert sorted(p.name for p in out.iterdir()) == written  # nothing more is written
    assert not [n for n in written if n.endswith(".tmp")]  # nor left half-written


def test_a_worker_killed_fails_its_inputs_clearly_and_a_rerun_completes(tmp_path):
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp_path / "run")
    inputs, out = _pictures(tmp_path / "in", 24, 600, 800), tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "medseg",
        "predict",
        "-m",
        str(run_dir),
        "-i",
        str(inputs),
        "-o",
        str(out),
    ]
    command += ["--workers", "2", "--device", "cpu"]
    parent = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while _rows(out / "manifest.csv") < 1 and parent.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        workers = _children(parent.pid)
        assert parent.poll() is None and workers, "the batch ended before a worker was seen"
        os.kill(workers[0], signal.SIGKILL)
        printed, _ = parent.communicate(timeout=180)  # no hang: the batch goes on in new processes
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 2, printed  # some inputs failed
    with (out / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 24 and 1 <= len(failed) < 24, printed
    assert all(
        "a worker process stopped" in r["reason"] and "run the same command again" in r["reason"]
        for r in failed
    )
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"done {len(failed)}, done earlier {24 - len(failed)}, skipped 0, failed 0" in again.stdout
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")] and not (out / ".locks").exists()


def test_a_broken_pool_leaves_no_temporary_file_of_its_processes(tmp_path):
    from medseg.io.atomic import remove_temporaries

    left = tmp_path / ".p02.png.4242.tmp"  # a worker killed while it wrote p02.png
    other = tmp_path / ".p03.png.4343.tmp"  # another process's, still writing
    done = tmp_path / "p01.png"
    for path in (left, other, done):
        path.write_bytes(b"x")
    for pid in (4242, 4244):  # the ended pool's processes
        remove_temporaries(tmp_path, pid)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".p03.png.4343.tmp", "p01.png"]
