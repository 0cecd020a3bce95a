"""`medseg predict` on 3D CT: agreement with `medseg run`, source grids, DICOM SEG, planted faults,
privacy, resume and MLflow model URIs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from medseg.infer.batch import predict_folder
from medseg.infer.discover import ref
from medseg.io.geometry import to_canonical
from medseg.tracking.models import load_bundle
from medseg.tracking.store import folder_store

from ..conftest import ROOT, SHARED_DATA
from .conftest import CPU, manifest, untrained_run_dir

PRIVATE = {"PatientName": "Doe^Jane", "PatientID": "PID-4711", "PatientBirthDate": "19610203"}
PATIENT_FOLDER = "Doe^Jane_PID-4711"  # real exports name folders after the patient
NAMED_SERIES = "ÉLODIE_DURAND"  # ... and files: ÉLODIE_DURAND/ÉLODIE_DURAND_0004.dcm


def case_inputs(ct_run: Path) -> dict[str, str]:
    datalist = json.loads((ct_run / "datalist.json").read_text())
    return {c["id"]: c["images"][0]["path"] for c in datalist["cases"]}


def test_predict_with_a_fold_model_equals_its_held_out_prediction(ct_run, tmp_path):
    """The same model, preprocessing and inferer as `medseg run` give the same labels; written on
    the grid of the input as stored (the DICOM series' voxel order, the NIfTI file's own affine)."""
    from medseg.io.dicom import folder_geometry

    images = case_inputs(ct_run)
    splits = json.loads((ct_run / "splits.json").read_text())
    for fold, split in enumerate(splits):
        inputs = tmp_path / f"in_{fold}"
        inputs.mkdir()
        for case_id in split["val"]:
            src = Path(images[case_id])
            if src.is_dir():
                shutil.copytree(src, inputs / case_id)
            else:
                shutil.copy(src, inputs / f"{case_id}.nii.gz")
        out = tmp_path / f"out_{fold}"
        summary = predict_folder(load_bundle(str(ct_run), folds=[fold]), inputs, out, CPU)
        assert summary["done"] == len(split["val"]) and summary["failed"] == 0
        for row in manifest(out):
            case_id = row["source"].removesuffix(".nii.gz") if row["kind"] == "nifti" else "ct_000"
            written = nib.load(out / row["mask"])
            ref = nib.load(ct_run / f"fold_{fold}" / "predictions" / f"{case_id}.nii.gz")
            canon, canon_affine = to_canonical(np.asarray(written.dataobj), written.affine)
            np.testing.assert_array_equal(canon, np.asarray(ref.dataobj))
            np.testing.assert_allclose(canon_affine, ref.affine, atol=1e-4)
            if row["kind"] == "dicom_series":  # the series' own (columns, rows, slices) order
                geom = folder_geometry(images[case_id])
                assert written.shape == geom.shape
                np.testing.assert_allclose(written.affine, geom.affine, atol=1e-4)
            else:
                np.testing.assert_allclose(written.affine, nib.load(images[case_id]).affine, atol=1e-4)


def _private_series(
    src: Path, dest: Path, series_uid: str, modality: str = "CT", keep: int | None = None, named: bool = False
):
    """Copy a series with new UIDs and planted patient identifiers (``named``: RLE-compressed,
    files named after their folder, as some exports name them after the patient)."""
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True)
    files = sorted(src.iterdir())[:keep]
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        for tag, value in PRIVATE.items():
            setattr(ds, tag, value)
        ds.SeriesInstanceUID, ds.Modality = series_uid, modality
        uid = generate_uid(entropy_srcs=[series_uid, str(i)])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        if named:
            ds.compress(pydicom.uid.RLELossless)  # encapsulated: a cut file lacks its delimiter
        ds.save_as(dest / (f"{dest.name}_{i:04d}.dcm" if named else f.name))
    return files


@pytest.fixture(scope="module")
def fault_tree(ct_run, tmp_path_factory) -> Path:
    """A tree with a good series, a second good series, and planted faults."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    tree = tmp_path_factory.mktemp("faults")
    series = Path(case_inputs(ct_run)["ct_000"])
    _private_series(series, tree / PATIENT_FOLDER / "good", "1.2.826.0.1.3680043.8.498.101")
    _private_series(series, tree / PATIENT_FOLDER / "second", "1.2.826.0.1.3680043.8.498.102")
    _private_series(series, tree / PATIENT_FOLDER / "mr", "1.2.826.0.1.3680043.8.498.103", modality="MR")
    _private_series(series, tree / PATIENT_FOLDER / "short", "1.2.826.0.1.3680043.8.498.104", keep=3)
    # a truncated series: its header reads, its pixel data does not (pydicom warns, naming the file)
    _private_series(series, tree / PATIENT_FOLDER / NAMED_SERIES, "1.2.826.0.1.3680043.8.498.105", named=True)
    victim = sorted((tree / PATIENT_FOLDER / NAMED_SERIES).iterdir())[4]
    victim.write_bytes(victim.read_bytes()[:-300])
    # a truncated file on its own (not even the header reads)
    (tree / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI")
    # a structured report: not an image
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID
    sr.Modality, sr.SeriesInstanceUID = "SR", generate_uid()
    for tag, value in PRIVATE.items():
        setattr(sr, tag, value)
    sr.save_as(tree / PATIENT_FOLDER / "report.dcm", enforce_file_format=True)
    (tree / "notes.txt").write_text("not an image\n")
    return tree


def _cli(model: Path, tree: Path, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "medseg", "predict", "--model", str(model), "--input", str(tree)]
    return [*cmd, "--output", str(out), *extra]


def _run_cli(model: Path, tree: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(_cli(model, tree, out), capture_output=True, text=True, env=env, cwd=ROOT)


@pytest.fixture(scope="module")
def first_predictions(
    ct_run, fault_tree, tmp_path_factory
) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """`medseg predict` on the fault tree, plain and with --log-paths, each into an output folder of
    its own: two independent processes, started together. Name -> (the finished process, its
    output folder); each test below reads one."""
    tmp = tmp_path_factory.mktemp("first_predictions")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = {}
    for name, extra in (("plain", ()), ("log_paths", ("--log-paths",))):
        (tmp / name).mkdir()
        with open(tmp / name / "stdout", "w") as stdout, open(tmp / name / "stderr", "w") as stderr:
            command = _cli(ct_run, fault_tree, tmp / name / "out", *extra)
            started[name] = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=ROOT)
    done = {}
    try:
        for name, proc in started.items():
            proc.wait(timeout=600)
            printed = [(tmp / name / stream).read_text() for stream in ("stdout", "stderr")]
            done[name] = (
                subprocess.CompletedProcess(proc.args, proc.returncode, *printed),
                tmp / name / "out",
            )
    finally:
        for proc in started.values():  # by their own process ids, where one ran past its time
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def test_planted_faults_never_stop_the_batch_and_nothing_private_leaks(ct_run, fault_tree, first_predictions):
    proc, out = first_predictions["plain"]  # this test alone reads and reruns it
    assert proc.returncode == 2, proc.stderr  # some inputs failed, the rest is done
    rows = {r["series_uid"] or r["ref"]: r for r in manifest(out)}
    good, second = rows["1.2.826.0.1.3680043.8.498.101"], rows["1.2.826.0.1.3680043.8.498.102"]
    assert good["status"] == second["status"] == "done"
    assert rows["1.2.826.0.1.3680043.8.498.103"]["status"] == "skipped"
    assert "Modality MR" in rows["1.2.826.0.1.3680043.8.498.103"]["reason"]
    assert "min_slices" in rows["1.2.826.0.1.3680043.8.498.104"]["reason"]
    truncated = rows["1.2.826.0.1.3680043.8.498.105"]
    # the failing file is named by the hash of its path (`medseg predict --log-paths` shows it)
    victim = f"{PATIENT_FOLDER}/{NAMED_SERIES}/{victim_name(fault_tree)}"
    assert truncated["status"] == "failed" and f"<{ref(victim)}>" in truncated["reason"]
    assert victim_name(fault_tree) not in truncated["reason"] and truncated["source"] == ""
    assert rows[ref("broken.dcm")]["status"] == rows[ref("notes.txt")]["status"] == "skipped"
    assert "not a DICOM file" in rows[ref("notes.txt")]["reason"]
    sr = next(r for r in manifest(out) if r["modality"] == "SR")
    assert "non-image object" in sr["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"], summary["skipped"]) == (2, 1, 5)
    assert "done 2" in proc.stdout and "failed 1" in proc.stdout
    # outputs are named by UID; the failed series left no file behind, nor a temporary one
    names = sorted(p.name for p in out.iterdir())
    assert f"{good['key']}.nii.gz" in names and f"{good['key']}_seg.dcm" in names
    assert not any(truncated["key"] in n for n in names) and not any(n.endswith(".tmp") for n in names)
    # privacy: no patient name, ID or birth date in logs, manifest, summary or file names
    texts = [proc.stdout, proc.stderr, (out / "manifest.csv").read_text(), (out / "summary.json").read_text()]
    texts += names
    assert "End of file reached before delimiter" in proc.stderr  # pydicom's warning, redacted
    for value in ("Doe", "Jane", "PID-4711", "19610203", "ÉLODIE", "DURAND", "broken.dcm"):
        assert not any(value in t for t in texts), value
    # the SEG references the source series and holds the same labels as the NIfTI
    from medseg.io.dicom_seg import read_seg

    seg = pydicom.dcmread(out / good["seg"])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == good["series_uid"]
    assert seg.StudyInstanceUID == good["study_uid"] and seg.Modality == "SEG"
    seg_label, seg_affine = read_seg(out / good["seg"])
    nifti = nib.load(out / good["mask"])
    canon, canon_affine = to_canonical(np.asarray(nifti.dataobj), nifti.affine)
    np.testing.assert_array_equal(seg_label, canon)
    np.testing.assert_allclose(seg_affine, canon_affine, atol=1e-3)

    # a rerun resumes: done inputs are kept untouched, the failed one is tried again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix in (".gz", ".dcm")}
    (out / second["mask"]).unlink()  # a lost output is made again
    proc = _run_cli(ct_run, fault_tree, out)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["done_earlier"], summary["failed"]) == (1, 1, 1), proc.stderr
    assert (out / good["mask"]).stat().st_mtime_ns == stamps[good["mask"]]
    assert (out / second["mask"]).is_file()
    assert len(manifest(out)) == 8


def test_mlflow_run_uri_gives_the_same_model_as_the_run_folder(ct_run, tmp_path):
    state = json.loads((ct_run / "run_state.json").read_text())
    uri = folder_store(ct_run).uri
    bundle = load_bundle(f"runs:/{state['parent_run_id']}", tracking_uri=uri, download_dir=tmp_path / "dl")
    direct = load_bundle(str(ct_run))
    assert sorted(bundle.checkpoints) == sorted(direct.checkpoints) == [0, 1]
    for a, b in zip(bundle.load(CPU), direct.load(CPU), strict=True):
        for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(p, q), name
    fold_run = state["folds"]["1"]["run_id"]
    one = load_bundle(f"runs:/{fold_run}", tracking_uri=uri, download_dir=tmp_path / "dl1")
    assert sorted(one.checkpoints) == [1]
    from medseg.errors import MedsegError

    with pytest.raises(MedsegError, match="no such run"):
        load_bundle("runs:/0123456789abcdef", tracking_uri=uri, download_dir=tmp_path / "dl2")
    # a registered model version made from the pipeline run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    client.create_registered_model("liver-spleen")
    parent = state["parent_run_id"]
    client.create_model_version("liver-spleen", f"runs:/{parent}", run_id=parent)
    client.set_registered_model_alias("liver-spleen", "champion", "1")
    for spec in ("models:/liver-spleen/1", "models:/liver-spleen@champion"):
        registered = load_bundle(spec, tracking_uri=uri, download_dir=tmp_path / "dl3")
        assert sorted(registered.checkpoints) == [0, 1]
    with pytest.raises(MedsegError, match="no such registered model version"):
        load_bundle("models:/liver-spleen/7", tracking_uri=uri, download_dir=tmp_path / "dl4")


def test_real_ct_series_predicted_on_its_own_grid_with_a_seg(tmp_path):
    """The real 20-slice series (JPEG 2000): the label lands on the series grid, the same grid as
    its TotalSegmentator label. The anonymised files carry no Study/Series/SOP Instance UIDs, so
    no SEG can reference them and the manifest says so; with UIDs given (as a PACS would), the SEG
    is written and reads back equal to the NIfTI."""
    from medseg.data.dicom_copy import copy_with_new_uids

    series = SHARED_DATA / "ct" / "totalsegmentator-example" / "dicom"
    if not series.is_dir():
        pytest.skip(f"real CT data not present at {series}")
    stats = "transforms.preprocess=[{ClipZScored: {lower: -1000, upper: 1000, mean: 0, std: 300}}]"
    run_dir = untrained_run_dir("ct.yaml", [stats, "transforms.patch_size=[32, 32, 8]"], tmp_path / "run", 1)
    bundle = load_bundle(str(run_dir))
    summary = predict_folder(bundle, series, tmp_path / "out", CPU)
    (row,) = manifest(tmp_path / "out")
    assert summary["done"] == 1 and row["seg"] == ""
    assert "no SOPClassUID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID" in row["reason"]
    label = nib.load(SHARED_DATA / "ct" / "totalsegmentator-example" / "seg_for_dicom.nii.gz")
    written = nib.load(tmp_path / "out" / row["mask"])
    from medseg.io.dicom import folder_geometry
    from medseg.io.geometry import canonical_geometry

    geom = folder_geometry(series)  # the series' own voxel order
    assert written.shape == geom.shape
    np.testing.assert_allclose(written.affine, geom.affine, atol=1e-3)
    # the same voxels as the label volume, which is stored in another axis order
    shape, affine = canonical_geometry(written.shape, written.affine)
    label_shape, label_affine = canonical_geometry(label.shape[:3], label.affine)
    assert shape == label_shape
    np.testing.assert_allclose(affine, label_affine, atol=1e-3)

    with_uids = tmp_path / "with_uids"
    uid = copy_with_new_uids(series, with_uids, "with-uids")
    predict_folder(bundle, with_uids, tmp_path / "out2", CPU)
    (row,) = manifest(tmp_path / "out2")
    assert row["status"] == "done" and row["series_uid"] == uid and row["seg"]
    from medseg.io.dicom_seg import read_seg

    seg_label, _ = read_seg(tmp_path / "out2" / row["seg"])
    nifti = nib.load(tmp_path / "out2" / row["mask"])
    np.testing.assert_array_equal(seg_label, to_canonical(np.asarray(nifti.dataobj), nifti.affine)[0])
    assert len(pydicom.dcmread(tmp_path / "out2" / row["seg"]).PerFrameFunctionalGroupsSequence) == 20 * 3


def victim_name(tree: Path) -> str:
    return sorted((tree / PATIENT_FOLDER / NAMED_SERIES).iterdir())[4].name


def test_log_paths_shows_the_paths_inside_the_input_folder(fault_tree, first_predictions):
    proc, out = first_predictions["log_paths"]
    assert proc.returncode == 2, proc.stderr
    rows = {r["series_uid"] or r["source"]: r for r in manifest(out)}
    truncated = rows["1.2.826.0.1.3680043.8.498.105"]
    assert victim_name(fault_tree) in truncated["reason"] and str(fault_tree) not in truncated["reason"]
    assert truncated["source"].startswith(f"{PATIENT_FOLDER}/{NAMED_SERIES}/")
    assert rows["broken.dcm"]["status"] == "skipped" and "not a DICOM file" in rows["notes.txt"]["reason"]


def test_a_failing_write_leaves_none_of_the_inputs_files(ct_run, tmp_path, monkeypatch):
    import medseg.io.dicom_seg as dicom_seg

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dicom_seg, "write_seg", broken)
    inputs = tmp_path / "in"
    shutil.copytree(case_inputs(ct_run)["ct_000"], inputs / "ct_000")
    summary = predict_folder(load_bundle(str(ct_run), folds=[0]), inputs, tmp_path / "out", CPU)
    (row,) = manifest(tmp_path / "out")
    assert summary["failed"] == 1 and row["status"] == "failed" and "disk full" in row["reason"]
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name != ".locks")
    assert written == ["manifest.csv", "summary.json"]
