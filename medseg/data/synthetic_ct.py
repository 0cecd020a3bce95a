"""Synthetic CT-like volumes for tests and demos: HU values, a 117-class-style label map, mixed formats.

Each case is a body (soft tissue, 0-40 HU, with fat) in air (-1000 HU) holding a "liver" (label 5,
about 60 HU), a "spleen" (label 1, about 45 HU), a "kidney" (label 2, about 30 HU, sometimes absent)
and a "vertebra" (label 7, about 400 HU), with Gaussian noise. Volumes are written as NIfTI
(alternately in RAS and LPS voxel order, so readers must reorient), and case 0 also as a DICOM CT
series (int16 with RescaleIntercept -1024, InstanceNumber deliberately not in position order),
listed in ``cases.csv`` for the ``table`` layout.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medseg.config.models import DataConfig, SyntheticConfig
from medseg.io.atomic import atomic_path
from medseg.io.nifti import write_nifti

SPACING = (1.5, 1.5, 3.0)
ORGANS = {5: 60.0, 1: 45.0, 2: 30.0, 7: 400.0}  # label value -> mean HU


def ellipsoid(shape: tuple[int, int, int], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean ellipsoid of ``radii`` (voxels) around ``centre`` on a grid of ``shape``."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return (((grid - centre) / radii) ** 2).sum(-1) <= 1.0


def make_case(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(HU volume float32, label uint8) in (x, y, z) order."""
    s = np.asarray(shape, float)
    hu = np.full(shape, -1000.0, np.float32)
    label = np.zeros(shape, np.uint8)
    body = ellipsoid(shape, s / 2, s * np.array([0.45, 0.4, 0.6]))
    hu[body] = rng.normal(20, 10)
    fat = body & ~ellipsoid(shape, s / 2, s * np.array([0.4, 0.35, 0.6]))
    hu[fat] = -90.0
    placements = {
        5: (np.array([0.38, 0.45, 0.5]), np.array([0.16, 0.14, 0.35])),
        1: (np.array([0.66, 0.42, 0.5]), np.array([0.08, 0.08, 0.2])),
        2: (np.array([0.62, 0.62, 0.45]), np.array([0.06, 0.07, 0.15])),
        7: (np.array([0.5, 0.7, 0.5]), np.array([0.05, 0.05, 0.5])),
    }
    for value, (centre, radii) in placements.items():
        if value == 2 and rng.random() < 0.3:
            continue
        jitter = rng.uniform(-0.04, 0.04, 3)
        mask = ellipsoid(shape, (centre + jitter) * s, radii * s * rng.uniform(0.85, 1.15, 3)) & body
        hu[mask] = ORGANS[value] + rng.normal(0, 5)
        label[mask] = value
    hu += rng.normal(0, 15, shape).astype(np.float32)
    return hu, label


def affine_for(shape: tuple[int, int, int], lps: bool) -> np.ndarray:
    """RAS affine of a synthetic case's grid."""
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-shape[0] * SPACING[0] / 2, -shape[1] * SPACING[1] / 2, -100.0]
    if lps:  # same world grid, voxels stored right-to-left and anterior-to-posterior
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[0, 3], flip[1, 3] = shape[0] - 1, shape[1] - 1
        affine = affine @ flip
    return affine


def write_ct_series(hu: np.ndarray, affine: np.ndarray, folder: Path, series_uid: str, seed: int = 0) -> None:
    """A DICOM CT series of an axis-aligned volume (x, y, z) with a RAS ``affine``; one file per slice."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    row_dir = lps[:3, 0] / np.linalg.norm(lps[:3, 0])
    col_dir = lps[:3, 1] / np.linalg.norm(lps[:3, 1])
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    study_uid = generate_uid(entropy_srcs=[series_uid, "study"])
    frame_uid = generate_uid(entropy_srcs=[series_uid, "frame"])
    order = np.random.default_rng(seed).permutation(hu.shape[2])  # InstanceNumber not by position
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(hu.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "SYNTHETIC", "Synthetic^Case"
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "", "O", ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.Manufacturer, ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = "medseg", frame_uid, ""
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = study_uid, series_uid, 1
        ds.InstanceNumber = int(order[k]) + 1
        ds.ImageOrientationPatient = [*(float(v) for v in row_dir), *(float(v) for v in col_dir)]
        ds.ImagePositionPatient = [float(v) for v in (lps @ np.array([0, 0, k, 1.0]))[:3]]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        stored = np.clip(np.round(hu[:, :, k].T + 1024), 0, 65535).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        with atomic_path(folder / f"slice_{k:04d}.dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)


def generate_ct_dataset(data: DataConfig, spec: SyntheticConfig) -> Path:
    """Write ``spec.n_cases`` synthetic CT volumes under ``data.root`` with ``cases.csv``.

    Args:
        data: the ``data`` section; ``data.root`` receives the volumes and the table.
        spec: number of cases, volume size and seed.

    Returns:
        ``data.root``.
    """
    from pydicom.uid import generate_uid

    root = Path(data.root)
    rng = np.random.default_rng(spec.seed)
    shape = (spec.width, spec.height, spec.depth)
    rows = []
    for i in range(spec.n_cases):
        case_id = f"ct_{i:03d}"
        hu, label = make_case(shape, rng)
        lps = i % 2 == 1
        affine = affine_for(shape, lps)
        stored_hu, stored_label = (hu[::-1, ::-1], label[::-1, ::-1]) if lps else (hu, label)
        label_path = f"labelsTr/{case_id}.nii.gz"
        write_nifti(root / label_path, stored_label, affine)
        if i == 0:
            image_path = f"dicom/{case_id}"
            write_ct_series(
                hu, affine_for(shape, False), root / image_path, generate_uid(entropy_srcs=[case_id])
            )
        else:
            image_path = f"imagesTr/{case_id}.nii.gz"
            write_nifti(root / image_path, np.round(stored_hu).astype(np.int16), affine)
        rows.append({"id": case_id, "image": image_path, "label": label_path, "patient_id": f"p{i:03d}"})
    with atomic_path(root / data.table) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "image", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    return root
