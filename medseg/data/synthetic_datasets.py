"""Data sets in the layouts the field keeps them, made here: nnU-Net v2 and Decathlon folders.

- :func:`write_mr_nnunet`: 3D two-channel MR-like cases (``T1``, ``T2``), one NIfTI per channel,
  ``imagesTr/{CASE}_{XXXX}.nii.gz``, ``labelsTr/{CASE}.nii.gz``, ``imagesTs`` and ``labelsTs`` for
  held-out cases, and nnU-Net's ``dataset.json``. Class 1 (``oedema``) is bright in T2 only and
  class 2 (``core``) bright in T1 only, so a network needs both channels, in their order.
- :func:`write_mr_decathlon`: the same cases as a Decathlon task: 4D NIfTI (channels last),
  ``dataset.json`` with ``modality``, ``labels`` value -> name and the ``training`` list.
- :func:`write_rgb_nnunet`: 2D RGB PNG pictures (the synthetic dermoscopy) as nnU-Net's natural
  images: one file of three channels (``R``, ``G``, ``B``) per case.
- :func:`isic_to_nnunet`: an ISIC 2018 folder (such as PH2) converted to an nnU-Net data set,
  pictures decoded and stored as lossless PNG (nnU-Net reads no JPEG), masks as 0/1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medseg.data.synthetic import DIAGNOSES, render_case
from medseg.data.synthetic_ct import ellipsoid
from medseg.io.nifti import write_nifti
from medseg.io.raster import read_raster, write_png

MR_SHAPE = (32, 32, 12)
MR_SPACING = (1.2, 1.2, 3.0)


def mr_case(
    rng: np.random.Generator, shape: tuple[int, int, int] = MR_SHAPE
) -> tuple[np.ndarray, np.ndarray]:
    """((2, x, y, z) float32 T1 and T2, (x, y, z) uint8 label: 1 oedema, 2 core)."""
    s = np.asarray(shape, float)
    body = ellipsoid(shape, s / 2, s * np.array([0.45, 0.42, 0.6]))
    centre = s * (0.5 + rng.uniform(-0.08, 0.08, 3))
    oedema = ellipsoid(shape, centre, s * np.array([0.22, 0.2, 0.35]) * rng.uniform(0.85, 1.15, 3)) & body
    core = ellipsoid(shape, centre, s * np.array([0.09, 0.09, 0.18]) * rng.uniform(0.85, 1.15, 3)) & body
    t1 = np.where(body, 100.0, 0.0) + np.where(core, 120.0, 0.0)
    t2 = np.where(body, 80.0, 0.0) + np.where(oedema & ~core, 150.0, 0.0)
    images = np.stack([t1, t2]).astype(np.float32) + rng.normal(0, 8, (2, *shape)).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    label[oedema] = 1
    label[core] = 2
    return images, label


def _affine() -> np.ndarray:
    return np.diag([*MR_SPACING, 1.0])


def _dataset_json(root: Path, content: dict) -> None:
    (root / "dataset.json").write_text(json.dumps(content, indent=1))


def write_mr_nnunet(root: Path, n_train: int = 8, n_test: int = 2, seed: int = 0) -> Path:
    """An nnU-Net v2 data set of two-channel MR-like volumes (see the module's note).

    Returns:
        ``root`` (name it ``DatasetXXX_Name`` as nnU-Net does).
    """
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        images, label = mr_case(rng)
        split, labels = ("Tr", "labelsTr") if i < n_train else ("Ts", "labelsTs")
        case = f"mr_{i:03d}"
        for c in range(2):
            write_nifti(root / f"images{split}" / f"{case}_{c:04d}.nii.gz", images[c], _affine())
        write_nifti(root / labels / f"{case}.nii.gz", label, _affine())
    _dataset_json(
        root,
        {
            "channel_names": {"0": "T1", "1": "T2"},
            "labels": {"background": 0, "oedema": 1, "core": 2},
            "numTraining": n_train,
            "file_ending": ".nii.gz",
            "name": root.name,
        },
    )
    return root


def write_mr_decathlon(root: Path, n_train: int = 8, n_test: int = 2, seed: int = 0) -> Path:
    """The cases of :func:`write_mr_nnunet` as a Decathlon task: one 4D NIfTI per case."""
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    training: list[dict[str, str]] = []
    test: list[dict[str, str]] = []
    for i in range(n_train + n_test):
        images, label = mr_case(rng)
        split, labels = ("Tr", "labelsTr") if i < n_train else ("Ts", "labelsTs")
        name = f"mr_{i:03d}.nii.gz"
        write_nifti(root / f"images{split}" / name, np.moveaxis(images, 0, -1), _affine())
        write_nifti(root / labels / name, label, _affine())
        entry = {"image": f"./images{split}/{name}", "label": f"./{labels}/{name}"}
        (training if i < n_train else test).append(entry)
    _dataset_json(
        root,
        {
            "name": root.name,
            "tensorImageSize": "4D",
            "modality": {"0": "T1", "1": "T2"},
            "labels": {"0": "background", "1": "oedema", "2": "core"},
            "numTraining": n_train,
            "numTest": n_test,
            "training": training,
            "test": [t["image"] for t in test],
        },
    )
    return root


def write_rgb_nnunet(
    root: Path, n_train: int = 10, n_test: int = 2, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """An nnU-Net v2 data set of RGB pictures (one PNG of three channels per case)."""
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        picture, mask = render_case(rng, *size, DIAGNOSES[i % 3])
        split, labels = ("Tr", "labelsTr") if i < n_train else ("Ts", "labelsTs")
        write_png(root / f"images{split}" / f"pic_{i:03d}_0000.png", picture)
        write_png(root / labels / f"pic_{i:03d}.png", mask.astype(np.uint8))
    _dataset_json(
        root,
        {
            "channel_names": {"0": "R", "1": "G", "2": "B"},
            "labels": {"background": 0, "lesion": 1},
            "numTraining": n_train,
            "file_ending": ".png",
            "name": root.name,
        },
    )
    return root


def isic_to_nnunet(
    isic_root: Path, root: Path, image_dir: str, mask_dir: str, suffix: str = "_segmentation"
) -> Path:
    """An ISIC 2018 layout folder as an nnU-Net data set: pictures decoded and stored as lossless
    PNG (``imagesTr/{ID}_0000.png``), masks as 0/1 PNG; the class named ``skin_lesion``."""
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    pictures = sorted(
        p for p in (isic_root / image_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
    )
    for picture in pictures:
        write_png(root / "imagesTr" / f"{picture.stem}_0000.png", read_raster(picture, 3))
        mask = read_raster(isic_root / mask_dir / f"{picture.stem}{suffix}.png")
        write_png(root / "labelsTr" / f"{picture.stem}.png", (mask > 0).astype(np.uint8))
    _dataset_json(
        root,
        {
            "channel_names": {"0": "R", "1": "G", "2": "B"},
            "labels": {"background": 0, "skin_lesion": 1},
            "numTraining": len(pictures),
            "file_ending": ".png",
            "name": root.name,
        },
    )
    return root
