"""`medseg predict --executor slurm --parts 2 --wait` against a real Slurm: the same manifest and
outputs as one process, and the merge written by the job after the parts."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import pytest

from ..conftest import make_dataset
from ..infer.conftest import untrained_run_dir
from .conftest import Slurm, medseg

pytestmark = [pytest.mark.integration, pytest.mark.slurm]
TINY_2D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
TIMING = {"seconds", "read_s", "preprocess_s", "infer_s", "write_s"}


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {r["key"]: {k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)}


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every prediction file (not the manifests, summaries, jobs, locks or model copy)."""
    return {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(("manifest", "summary", "parts"))
    }


@pytest.mark.slow  # minutes on 2 cores: `make test-slow`
def test_parts_on_slurm_give_what_one_process_gives(slurm: Slurm, tmp_path):
    data = make_dataset(tmp_path / "d", n_cases=8, height=40, width=48)
    model = [*TINY_2D, "transforms.spatial_size=[32, 32]"]
    run_dir = untrained_run_dir("demo.yaml", model, tmp_path / "model")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in sorted((data / "ISIC2018_Task1-2_Training_Input").iterdir())[:7]:
        (inputs / f.name).write_bytes(f.read_bytes())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    common = ["-m", str(run_dir), "-i", str(inputs), "--device", "cpu", "--workers", "0"]
    one = subprocess.run(
        medseg("predict", *common, "-o", str(tmp_path / "one")), env=slurm.env, capture_output=True, text=True
    )
    assert one.returncode == 2, one.stderr  # the broken picture fails

    out = tmp_path / "parts"
    cmd = medseg("predict", *common, "-o", str(out), "--set", "executor.cpus=1")
    cmd += ["--set", "executor.poll_seconds=0.5", "--executor", "slurm", "--parts", "2", "--wait"]
    done = subprocess.run(cmd, env=slurm.env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout + done.stderr  # some inputs failed, as in one process
    array, merge = re.search(r"job array (\d+) \(parts 1, 2\) and job (\d+) \(merge", done.stdout).groups()
    assert re.search(r"part 1/2: done: \d done", done.stdout) and re.search(r"part 2/2: done", done.stdout)
    assert f"merge: done: 7 done, 0 done earlier, 0 skipped, 1 failed; manifest: {out / 'manifest.csv'}" in (
        done.stdout
    )
    assert (out / "jobs" / f"merge-{merge}.log").is_file()
    assert (out / "jobs" / f"part_1-{array}.log").is_file()
    assert _rows(out / "manifest.csv") == _rows(tmp_path / "one" / "manifest.csv")
    assert _outputs(out) == _outputs(tmp_path / "one")
    assert len(_outputs(out)) == 14  # a mask and an overlay per picture that was read

    again = subprocess.run(cmd, env=slurm.env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    # the part holding the broken picture is the only one submitted again; it fails it again
    resubmitted = r"submitted: job array \d+ \(parts [12]\) and job \d+ \(merge"
    assert re.search(resubmitted, again.stdout), again.stdout
    assert again.returncode == 2 and _rows(out / "manifest.csv") == _rows(tmp_path / "one" / "manifest.csv")
