"""`medseg predict` with worker processes, per-stage seconds, a process that dies, and a batch split
into parts."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from medseg.errors import MedsegError
from medseg.infer import processes
from medseg.infer.batch import predict_folder
from medseg.infer.discover import discover
from medseg.infer.parts import merge
from medseg.io.lock import Busy, hold
from medseg.io.raster import read_raster
from medseg.tracking.models import load_bundle

from ..conftest import ROOT
from .conftest import CPU, manifest, untrained_run_dir

TINY_2D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]
STAGES = ("read_s", "preprocess_s", "infer_s", "write_s")


@pytest.fixture(scope="module")
def model_and_inputs(synthetic_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flow")
    run_dir = untrained_run_dir("demo.yaml", [*TINY_2D, "transforms.spatial_size=[32, 32]"], tmp / "run")
    inputs = tmp / "in"
    inputs.mkdir()
    for f in sorted((synthetic_root / "ISIC2018_Task1-2_Training_Input").iterdir())[:7]:
        (inputs / f.name).write_bytes(f.read_bytes())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    return run_dir, inputs


def _rows(path):
    with open(path, newline="") as fh:
        return {r["key"]: r for r in csv.DictReader(fh)}


def test_worker_processes_change_nothing_but_the_time(model_and_inputs, tmp_path):
    run_dir, inputs = model_and_inputs
    bundle = load_bundle(str(run_dir))
    inline = predict_folder(bundle, inputs, tmp_path / "inline", CPU, workers=0)
    pooled = predict_folder(bundle, inputs, tmp_path / "pooled", CPU, workers=2)
    for summary in (inline, pooled):  # the broken file fails alone, the others are done
        assert (summary["done"], summary["failed"]) == (7, 1)
        assert set(summary["stage_seconds"]) == {"read", "preprocess", "infer", "write"}
        assert summary["seconds"] > 0 and summary["inputs_per_minute"] > 0
    assert pooled["workers"] == 2 and inline["workers"] == 0
    a, b = _rows(tmp_path / "inline" / "manifest.csv"), _rows(tmp_path / "pooled" / "manifest.csv")
    assert a.keys() == b.keys() and len(a) == 8
    for key, row in b.items():
        assert row["status"] == a[key]["status"] and row["reason"] == a[key]["reason"]
        if row["status"] == "done":
            assert all(float(row[s]) >= 0 for s in STAGES)
            assert float(row["seconds"]) == pytest.approx(sum(float(row[s]) for s in STAGES), abs=0.02)
            np.testing.assert_array_equal(
                read_raster(tmp_path / "pooled" / row["mask"]), read_raster(tmp_path / "inline" / row["mask"])
            )
        else:
            assert key == "broken" and "broken.png" in row["reason"] and row["infer_s"] == ""


VICTIM: dict[str, str] = {}  # the input whose worker process dies (read after the fork)
_real_one = processes._one


def _dies_on_the_victim(item, out_dir):  # module level: the pool pickles it by name
    if item.key == VICTIM.get("key"):
        os._exit(3)  # as the kernel's out-of-memory killer would end it
    return _real_one(item, out_dir)


def test_a_process_that_dies_fails_only_the_inputs_under_way(model_and_inputs, tmp_path, monkeypatch):
    run_dir, inputs = model_and_inputs
    bundle = load_bundle(str(run_dir))
    keys = [item.key for item in discover(inputs, bundle.cfg.transforms.spatial_dims, bundle.cfg.predict)]
    VICTIM["key"] = keys[-2]  # late in the batch: inputs before it are done by then
    monkeypatch.setattr(processes, "_one", _dies_on_the_victim)
    out = tmp_path / "out"
    summary = predict_folder(bundle, inputs, out, CPU, workers=2)
    rows = _rows(out / "manifest.csv")
    assert set(rows) == set(keys)  # every input has its row
    died = {k for k, r in rows.items() if "worker process stopped" in r["reason"]}
    assert VICTIM["key"] in died and len(died) <= 2 * processes.AHEAD  # only those under way
    done = {k for k, r in rows.items() if r["status"] == "done"}
    assert done == set(keys) - died - {"broken"} and len(done) >= 3
    assert all((out / rows[k]["mask"]).is_file() for k in done)
    assert not any((out / f"{k}.png").exists() for k in died - done)  # none half-written
    failed = died | {"broken"}  # the broken file may have been under way too
    assert (summary["done"], summary["failed"]) == (len(done), len(failed))
    monkeypatch.setattr(processes, "_one", _real_one)
    again = predict_folder(bundle, inputs, out, CPU, workers=2)  # the rerun segments what failed
    assert (again["done"], again["done_earlier"], again["failed"]) == (len(failed) - 1, len(done), 1)


def _slow_one(item, out_dir):  # module level: the pool pickles it by name
    import time

    time.sleep(3.0)
    return _real_one(item, out_dir)


def test_ctrl_c_stops_the_worker_processes_at_once(model_and_inputs, tmp_path, monkeypatch):
    import _thread
    import multiprocessing
    import threading
    import time

    run_dir, inputs = model_and_inputs
    bundle = load_bundle(str(run_dir))
    monkeypatch.setattr(processes, "_one", _slow_one)
    threading.Timer(1.0, _thread.interrupt_main).start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        predict_folder(bundle, inputs, tmp_path / "out", CPU, workers=2)
    assert time.perf_counter() - t0 < 4.5  # not the 6 s the four inputs under way would take
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children()
    assert not list((tmp_path / "out").glob(".*.tmp"))  # no half-written file
    rows = _rows(tmp_path / "out" / "manifest.csv") if (tmp_path / "out" / "manifest.csv").exists() else {}
    assert all((tmp_path / "out" / r["mask"]).is_file() for r in rows.values() if r["status"] == "done")


def test_fewer_inputs_than_workers_run_in_this_process(model_and_inputs, tmp_path, monkeypatch):
    run_dir, inputs = model_and_inputs
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(inputs.glob("SYN*"))[:3]:
        (few / f.name).write_bytes(f.read_bytes())

    def no_processes(*args, **kwargs):
        raise AssertionError("3 inputs for 4 workers should not start worker processes")

    monkeypatch.setattr(processes, "segmented_in_processes", no_processes)
    summary = predict_folder(load_bundle(str(run_dir)), few, tmp_path / "out", CPU, workers=4)
    assert (summary["done"], summary["failed"]) == (3, 0)


def test_parts_share_the_inputs_and_the_last_one_merges(model_and_inputs, tmp_path):
    run_dir, inputs = model_and_inputs
    out = tmp_path / "out"
    bundle = load_bundle(str(run_dir))
    first = predict_folder(bundle, inputs, out, CPU, workers=0, part=(1, 2))
    assert "merged" not in first and not (out / "manifest.csv").exists()
    with pytest.raises(MedsegError, match=r"part\(s\) 2/2 have not finished"):
        merge(out, strict=True)
    second = predict_folder(bundle, inputs, out, CPU, workers=1, part=(2, 2))
    one, two = _rows(out / "manifest.part1of2.csv"), _rows(out / "manifest.part2of2.csv")
    assert len(one) == 4 and len(two) == 4 and not one.keys() & two.keys()  # disjoint, 8 in all
    merged = second["merged"]
    assert (merged["done"], merged["failed"]) == (7, 1) and len(merged["parts"]) == 2
    assert _rows(out / "manifest.csv") == {**one, **two}
    assert json.loads((out / "summary.json").read_text())["done"] == 7
    again = predict_folder(bundle, inputs, out, CPU, workers=0)  # a whole rerun: nothing left to do
    assert (again["done"], again["done_earlier"], again["failed"]) == (0, 7, 1)


def test_a_part_runs_once_and_a_whole_batch_not_beside_parts(model_and_inputs, tmp_path):
    run_dir, inputs = model_and_inputs
    out = tmp_path / "out"
    bundle = load_bundle(str(run_dir))
    locks = out / ".locks"
    with hold(locks / "predict.part1of2.lock", "part 1"), hold(locks / "predict.lock", "parts", shared=True):
        with pytest.raises(Busy, match="part 1/2 of"):
            predict_folder(bundle, inputs, out, CPU, workers=0, part=(1, 2))
        with pytest.raises(Busy, match=r"\(predict\) is in use"):
            predict_folder(bundle, inputs, out, CPU, workers=0)


def test_two_part_jobs_at_once_from_the_command_line(model_and_inputs, tmp_path):
    run_dir, inputs = model_and_inputs
    out = tmp_path / "out"

    def job(part):
        cmd = [sys.executable, "-m", "medseg", "predict", "-m", str(run_dir), "-i", str(inputs)]
        cmd += ["-o", str(out)]
        return subprocess.Popen(
            [*cmd, "--part", part, "--device", "cpu", "--workers", "1"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    jobs = [job("1/2"), job("2/2")]
    results = [j.communicate(timeout=300) for j in jobs]
    assert sorted(j.returncode for j in jobs) == [0, 2], results  # the broken file fails its part
    assert len(manifest(out)) == 8
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (7, 1)
    merged = subprocess.run(
        [sys.executable, "-m", "medseg", "predict", "-o", str(out), "--merge"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert merged.returncode == 0 and "done 7" in merged.stdout, merged.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "medseg", "predict", "-o", str(out), "--part", "3/2", "-m", "x", "-i", "y"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "--part 3/2: expected I/N" in bad.stderr and "Traceback" not in bad.stderr
