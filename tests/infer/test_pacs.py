"""`medseg predict` against a real Orthanc over DICOMweb: the real CT series in, its SEG back.

Orthanc (Debian `orthanc` and `orthanc-dicomweb`) runs on 127.0.0.1 on a free port, with its
storage and configuration in a temporary folder, and is stopped by its own process id. The tests
skip with the reason where Orthanc, its DICOMweb plugin or the real CT data is absent.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.data.dicom_copy import copy_with_new_uids
from medseg.errors import MedsegError
from medseg.infer.pacs import Query, predict_pacs
from medseg.io.dicomweb import Pacs
from medseg.io.geometry import to_canonical
from medseg.tracking.models import load_bundle

from ..conftest import SHARED_DATA
from .conftest import CPU, manifest, untrained_run_dir

SERIES = SHARED_DATA / "ct" / "totalsegmentator-example" / "dicom"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
STATS = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 40, std: 300}}]"
TINY_3D = ["model.args.channels=[4, 8, 16]", "model.args.strides=[2, 2]", "model.args.num_res_units=1"]


class Orthanc:
    """A real Orthanc with DICOMweb, its files under ``folder``."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        exe = shutil.which("Orthanc")
        if exe is None or not PLUGIN.is_file():
            pytest.skip(
                "Orthanc with its DICOMweb plugin is not installed (Debian orthanc, orthanc-dicomweb)"
            )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.folder, self.exe = folder, exe
        folder.mkdir(parents=True, exist_ok=True)
        self.rest = f"http://127.0.0.1:{self.port}"
        self.url = f"dicomweb+{self.rest}/dicom-web"
        config = {
            "Name": "medseg-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(users),
            "RegisteredUsers": users or {},
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.folder / "orthanc.log", "a")  # noqa: SIM115 - Orthanc's own, for failures
        self.proc = subprocess.Popen([self.exe, str(self.folder / "orthanc.json")], stdout=log, stderr=log)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.rest + "/system", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # it answers (401 when it asks for credentials)
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    pytest.fail("Orthanc did not start: " + (self.folder / "orthanc.log").read_text()[-2000:])
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # by its own process id
            self.proc.wait(timeout=30)

    def upload(self, folder: Path) -> None:
        for f in sorted(folder.iterdir()):
            request = urllib.request.Request(self.rest + "/instances", data=f.read_bytes(), method="POST")
            urllib.request.urlopen(request, timeout=30)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    server = Orthanc(tmp_path / "orthanc-home")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ct_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SERIES.is_dir():
        pytest.skip(f"the real CT series is not present at {SERIES}")
    return untrained_run_dir(
        "ct.yaml", [STATS, *TINY_3D], tmp_path_factory.mktemp("ct_model") / "run", folds=1
    )


def _series_copy(dest: Path, index: int) -> str:
    """The real CT series under new UIDs (a SEG must reference them); its SeriesInstanceUID."""
    return copy_with_new_uids(SERIES, dest, f"pacs-{index}")


def test_a_series_from_orthanc_comes_back_as_a_seg_orthanc_can_resolve(orthanc, ct_model, tmp_path):
    from medseg.io.dicom_seg import read_seg

    uid = _series_copy(tmp_path / "series", 0)
    orthanc.upload(tmp_path / "series")
    out = tmp_path / "out"
    summary = predict_pacs(load_bundle(str(ct_model)), orthanc.url, out, CPU, Query(), send_to=orthanc.url)
    assert summary["done"] == 1 and summary["failed"] == 0
    assert summary["pacs"] == {"found": 1, "done_earlier": 0, "fetched": 1, "sent": 1, "send_failed": 0}
    (row,) = manifest(out)
    assert row["key"] == uid and row["sent"] == "yes" and row["pacs_answer"].startswith("stored")
    assert not list((out / ".dicomweb").iterdir())  # the fetched copy is gone once written
    # the SEG as Orthanc holds it: found by QIDO, its references resolve to the uploaded series
    pacs = Pacs(orthanc.url)
    (found,) = pacs.find_series(modality="SEG")
    seg_folder = tmp_path / "seg_back"
    assert pacs.fetch_series(found["study_uid"], found["series_uid"], seg_folder) == 1
    import pydicom

    seg_path = next(seg_folder.iterdir())
    seg = pydicom.dcmread(seg_path)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    source_uids = {pydicom.dcmread(f).SOPInstanceUID for f in (tmp_path / "series").iterdir()}
    assert {
        i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    } == source_uids
    # its voxels equal the NIfTI written beside it
    label, affine = read_seg(seg_path)
    written = nib.load(out / row["mask"])
    canon, canon_affine = to_canonical(np.asarray(written.dataobj), written.affine)
    np.testing.assert_array_equal(label, canon)
    np.testing.assert_allclose(affine, canon_affine, atol=1e-3)
    again = predict_pacs(load_bundle(str(ct_model)), orthanc.url, out, CPU, Query(), send_to=orthanc.url)
    assert again["pacs"]["done_earlier"] == 1 and again["pacs"]["fetched"] == 0 and again["pacs"]["sent"] == 0


def test_orthanc_stopping_mid_batch_ends_clearly_and_a_rerun_does_what_was_left(
    orthanc, ct_model, tmp_path, monkeypatch
):
    uids = [_series_copy(tmp_path / f"series{i}", i) for i in range(2)]
    for i in range(2):
        orthanc.upload(tmp_path / f"series{i}")
    real_fetch = Pacs.fetch_series
    fetched: list[str] = []

    def fetch_then_stop(self, study_uid, series_uid, folder):
        n = real_fetch(self, study_uid, series_uid, folder)
        fetched.append(series_uid)
        orthanc.stop()  # the PACS goes away after the first series
        return n

    monkeypatch.setattr(Pacs, "fetch_series", fetch_then_stop)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    with pytest.raises(MedsegError, match=r"127\.0\.0\.1:\d+/dicom-web: the PACS does not answer"):
        predict_pacs(load_bundle(str(ct_model)), orthanc.url, out, CPU, Query())
    assert time.perf_counter() - t0 < 30 and len(fetched) == 1
    monkeypatch.setattr(Pacs, "fetch_series", real_fetch)
    orthanc.start()
    summary = predict_pacs(load_bundle(str(ct_model)), orthanc.url, out, CPU, Query())
    assert summary["pacs"]["fetched"] == 1  # only the series not fetched before
    assert summary["done"] == 2 and sorted(r["key"] for r in manifest(out)) == sorted(uids)


def test_a_pacs_that_is_not_there_is_named_in_seconds(tmp_path, ct_model):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(MedsegError, match=f"127.0.0.1:{port}/dicom-web: the PACS does not answer"):
        predict_pacs(
            load_bundle(str(ct_model)), f"dicomweb+http://127.0.0.1:{port}/dicom-web", tmp_path, CPU, Query()
        )
    assert time.perf_counter() - t0 < 10


def test_basic_credentials_come_from_the_environment_and_stay_out_of_every_output(
    ct_model, tmp_path, monkeypatch, caplog
):
    from medseg.infer.bundle import bundle_from_run_dir

    server = Orthanc(tmp_path / "orthanc-home", users={"alice": "s3cret-Pa55"})
    try:
        _series_copy(tmp_path / "series", 5)
        request = urllib.request.Request(server.rest + "/instances", method="POST")
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(b"alice:s3cret-Pa55").decode())
        for f in sorted((tmp_path / "series").iterdir()):
            urllib.request.urlopen(request, data=f.read_bytes(), timeout=30)
        settings = ["predict.dicomweb.username=alice", "predict.dicomweb.password_env=PACS_PASSWORD"]
        bundle = bundle_from_run_dir(ct_model, settings)
        monkeypatch.setenv("PACS_PASSWORD", "wrong")
        with pytest.raises(MedsegError, match="searching for series was refused \\(HTTP 401\\)"):
            predict_pacs(bundle, server.url, tmp_path / "out", CPU, Query())
        monkeypatch.setenv("PACS_PASSWORD", "s3cret-Pa55")
        with caplog.at_level("DEBUG"):
            summary = predict_pacs(bundle, server.url, tmp_path / "out", CPU, Query(), send_to=server.url)
        assert summary["done"] == 1 and summary["pacs"]["sent"] == 1
        written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
        assert not [p for p in written if b"s3cret" in p.read_bytes()]
        assert "s3cret" not in caplog.text
        monkeypatch.delenv("PACS_PASSWORD")
        with pytest.raises(MedsegError, match="the environment variable PACS_PASSWORD is not set"):
            predict_pacs(bundle, server.url, tmp_path / "out", CPU, Query())
    finally:
        server.stop()


def test_the_same_series_predicted_into_two_folders_is_stored_once(orthanc, ct_model, tmp_path):
    import pydicom

    uid = _series_copy(tmp_path / "series", 7)
    orthanc.upload(tmp_path / "series")
    query = Query(modality="CT")
    first = predict_pacs(
        load_bundle(str(ct_model)), orthanc.url, tmp_path / "a", CPU, query, send_to=orthanc.url
    )
    second = predict_pacs(
        load_bundle(str(ct_model)), orthanc.url, tmp_path / "b", CPU, query, send_to=orthanc.url
    )
    assert first["pacs"]["sent"] == 1 and "already_in_pacs" not in first["pacs"]
    assert second["done"] == 1 and second["pacs"]["sent"] == 0 and second["pacs"]["already_in_pacs"] == 1
    (row_a,), (row_b,) = manifest(tmp_path / "a"), manifest(tmp_path / "b")
    assert row_a["sent"] == "yes" and row_b["sent"] == "already in the PACS" and row_b["key"] == uid
    seg_a, seg_b = (
        pydicom.dcmread(d / r["seg"]) for d, r in ((tmp_path / "a", row_a), (tmp_path / "b", row_b))
    )
    assert seg_a.SOPInstanceUID == seg_b.SOPInstanceUID and seg_a.SeriesInstanceUID == seg_b.SeriesInstanceUID
    assert seg_a.SOPInstanceUID.startswith("2.25.") and seg_a.SOPInstanceUID != seg_a.SeriesInstanceUID
    assert row_b["pacs_answer"] == f"holds {seg_a.SOPInstanceUID}"
    # the PACS holds one SEG: one series, one instance
    pacs = Pacs(orthanc.url)
    (found,) = pacs.find_series(modality="SEG")
    assert found["series_uid"] == seg_a.SeriesInstanceUID
    listed = pacs.client.search_for_instances(found["study_uid"], found["series_uid"])
    assert len(listed) == 1
    # other settings make another algorithm: its SEG has other UIDs and is stored
    assert load_bundle(str(ct_model)).cfg.infer.overlap != 0.25
    other = predict_pacs(
        load_bundle(str(ct_model), ["infer.overlap=0.25"]),
        orthanc.url,
        tmp_path / "c",
        CPU,
        query,
        send_to=orthanc.url,
    )
    assert other["pacs"]["sent"] == 1 and len(pacs.find_series(modality="SEG")) == 2
