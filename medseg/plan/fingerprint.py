"""The data set fingerprint: what the plan rules read (``fingerprint.json``).

Per case: shape, spacing, orientation, modality; per channel: intensity percentiles (0.5, 50,
99.5), mean and std over the foreground (a seeded sample of at most 10,000 voxels per case, as
nnU-Net samples); per class: voxel counts and the share of cases that contain it. Cases go through
ingest first, so bad cases are reported here before any training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import DataConfig
from medseg.data.datalist import build_datalist
from medseg.io.readers import reader_for

log = logging.getLogger(__name__)

SAMPLES_PER_CASE = 10_000
PERCENTILES = (0.5, 50.0, 99.5)
WORKFLOWS = ("isic", "ct", "mammo", "table")


def data_config(root: Path, workflow: str) -> DataConfig:
    """The ``data`` section a workflow starts from; label values are all taken as classes."""
    if workflow == "isic":
        return DataConfig(root=root, on_bad_case="skip")
    from medseg.config.models import MammographyConfig

    mammo = MammographyConfig() if workflow == "mammo" else None
    return DataConfig(
        root=root, layout="table", in_channels=1, num_classes=256, on_bad_case="skip", mammography=mammo
    )


def spatial_dims_of(case: dict[str, Any], workflow: str) -> int:
    if workflow in ("isic", "mammo"):
        return 2
    if workflow == "ct":
        return 3
    return 3 if reader_for(case["image"]).is_3d(Path(case["image"])) else 2


def modality(path: str, channels: int, workflow: str) -> str:
    """CT, MR, MG, ... from a DICOM header; RGB or grey for pictures; CT for the ct workflow's NIfTI."""
    reader = reader_for(path)
    if reader.kind in ("dicom_dir", "dicom"):
        from medseg.io.dicom import read_header

        first = next(iter(sorted(Path(path).iterdir()))) if Path(path).is_dir() else Path(path)
        return str(read_header(first).get("Modality", "") or "unknown")
    if reader.pictures:
        return "RGB" if channels == 3 else "grey"
    return {"ct": "CT", "mammo": "MG"}.get(workflow, "unknown")


def _case(
    case: dict[str, Any], dims: int, workflow: str, rng: np.random.Generator
) -> tuple[dict, np.ndarray, np.ndarray]:
    """(case entry, foreground sample (n, channels), label values counted)."""
    from nibabel.orientations import aff2axcodes

    from medseg.transforms.loader import load_image

    image = load_image(case["image"], dims, channels=3 if workflow == "isic" else None)
    label = load_image(case["label"], dims, is_label=True)
    if workflow == "mammo":  # measured as trained: flipped, cropped to the breast, capped in size
        from medseg.config.models import MammographyConfig
        from medseg.transforms.steps import mammo_prepared

        done = mammo_prepared(MammographyConfig())({"image": image, "label": label})
        image, label = done["image"], done["label"]
    array, lab = np.asarray(image), np.asarray(label)[0]
    spacing = [float(s) for s in np.asarray(image.meta["spacing"]).ravel()[:dims]]
    source = image.meta.get("source_affine")
    entry = {
        "id": case["id"],
        "shape": list(array.shape[1:]),
        "spacing": spacing,
        "orientation": "".join(aff2axcodes(np.asarray(source))) if dims == 3 and source is not None else "2D",
        "modality": modality(case["image"], array.shape[0], workflow),
    }
    fg = array[:, lab > 0].T
    if len(fg) > SAMPLES_PER_CASE:
        fg = fg[rng.choice(len(fg), SAMPLES_PER_CASE, replace=False)]
    return entry, fg, np.bincount(lab.astype(np.int64).ravel())


def _intensity(samples: np.ndarray) -> list[dict[str, float]]:
    out = []
    for c in range(samples.shape[1]):
        v = samples[:, c].astype(np.float64)
        p = np.percentile(v, PERCENTILES) if len(v) else [float("nan")] * 3
        out.append(
            {
                "percentile_00_5": float(p[0]),
                "median": float(p[1]),
                "percentile_99_5": float(p[2]),
                "mean": float(v.mean()) if len(v) else float("nan"),
                "std": float(v.std()) if len(v) else float("nan"),
            }
        )
    return out


def fingerprint(root: Path, workflow: str, seed: int = 0) -> dict[str, Any]:
    """Measure the data set under ``root``.

    Args:
        root: the data folder (ISIC layout, or a ``cases.csv`` table).
        workflow: ``isic``, ``ct``, ``mammo`` or ``table``.
        seed: the sampling seed of foreground intensities.

    Returns:
        The fingerprint (JSON-ready): ``cases``, ``bad_cases``, ``spatial_dims``, ``channels``,
        ``intensity`` per channel, ``classes`` and the medians the rules read.

    Raises:
        DataError: no usable case (every bad case is listed).
    """
    data = data_config(Path(root), workflow)
    cases, bad = build_datalist(
        data, 3 if workflow == "ct" else 2 if workflow != "table" else _table_dims(data), data.in_channels
    )
    dims = spatial_dims_of(cases[0], workflow)
    rng = np.random.default_rng(seed)
    entries, samples, counts = [], [], []
    for case in cases:
        entry, fg, count = _case(case, dims, workflow, rng)
        entries.append(entry)
        samples.append(fg)
        counts.append(count)
        log.info("fingerprint: %s %s", case["id"], entry["shape"])
    n_classes = max(len(c) for c in counts)
    counts = [np.pad(c, (0, n_classes - len(c))) for c in counts]
    classes = {
        str(k): {
            "voxels": int(sum(int(c[k]) for c in counts)),
            "cases_with": int(sum(int(c[k] > 0) for c in counts)),
            "share_of_cases": round(sum(int(c[k] > 0) for c in counts) / len(counts), 4),
        }
        for k in range(n_classes)
        if any(c[k] for c in counts)  # label values present; a 0/255 mask lists two
    }
    shapes = np.array([e["shape"] for e in entries], dtype=float)
    spacings = np.array([e["spacing"] for e in entries], dtype=float)
    return {
        "root": str(root),
        "workflow": workflow,
        "spatial_dims": dims,
        "channels": int(samples[0].shape[1]) if samples else data.in_channels,
        "n_cases": len(entries),
        "n_patients": len({c.get("patient_id") or c["id"] for c in cases}),
        "modality": max({e["modality"] for e in entries}, key=[e["modality"] for e in entries].count),
        "median_shape": np.median(shapes, 0).tolist(),
        "median_spacing": np.median(spacings, 0).tolist(),
        "intensity": _intensity(np.concatenate(samples) if samples else np.zeros((0, 1))),
        "classes": classes,
        "cases": entries,
        "bad_cases": [{"id": b.get("id"), "reason": b["reason"]} for b in bad],
        "usable": cases,  # the ingest list, for calibration; not saved
    }


def _table_dims(data: DataConfig) -> int:
    """2 or 3: whether the first listed image is a volume."""
    from medseg.data.datalist import read_table

    pairs, _ = read_table(data)
    return 3 if pairs and reader_for(pairs[0]["image"]).is_3d(Path(pairs[0]["image"])) else 2
