"""The data set fingerprint: what the plan rules read (``fingerprint.json``).

Per case: shape, spacing, orientation, modality; per channel: its name and the intensity
percentiles (0.5, 50, 99.5), mean and std over the foreground (a seeded sample of at most 10,000
voxels per case, as nnU-Net samples); per class: voxel counts and the share of cases that contain
it. Cases go through ingest first, so bad cases are reported here before any training. A data set
whose masks are all empty is refused: there is nothing to learn, and its statistics are undefined.

The workflow is found from the folder when not given (:func:`detect_workflow`): a ``dataset.json``
makes an nnU-Net or Decathlon data set, the ISIC folders an ISIC one, a ``cases.csv`` a table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.models import DataConfig
from medseg.data.datalist import build_datalist
from medseg.data.layouts import list_cases
from medseg.errors import DataError
from medseg.io.case import Case
from medseg.io.dataset_json import detect_layout, read_dataset_json
from medseg.io.readers import reader_of

log = logging.getLogger(__name__)

SAMPLES_PER_CASE = 10_000
PERCENTILES = (0.5, 50.0, 99.5)
WORKFLOWS = ("auto", "isic", "ct", "mammo", "table", "nnunet", "decathlon")
DATASETS = ("nnunet", "decathlon")


def detect_workflow(root: Path) -> str:
    """The workflow of a data folder: ``nnunet``/``decathlon`` (a ``dataset.json``), ``isic`` (the
    ISIC 2018 folders) or ``table`` (a ``cases.csv``).

    Raises:
        DataError: none of these is there; the message says what was looked for.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    layout = detect_layout(root)
    if layout is not None:
        return layout
    defaults = DataConfig(root=root)
    if (root / defaults.image_dir).is_dir():
        return "isic"
    if (root / defaults.table).is_file():
        return "table"
    raise DataError(
        f"{root}: no dataset.json (nnU-Net or Decathlon), no {defaults.image_dir}/ (ISIC 2018) and no "
        f"{defaults.table} (a case table); give --workflow isic|ct|mammo|table|nnunet|decathlon"
    )


def data_config(root: Path, workflow: str) -> DataConfig:
    """The ``data`` section a workflow starts from; label values are all taken as classes, and an
    nnU-Net or Decathlon data set's ``dataset.json`` names the channels and classes."""
    if workflow == "isic":
        return DataConfig(root=root, on_bad_case="skip")
    if workflow in DATASETS:
        info = read_dataset_json(root, workflow)
        return DataConfig(
            root=root,
            layout=workflow,
            in_channels=len(info.channel_names),
            channel_names=list(info.channel_names),
            num_classes=len(info.labels) + 1,
            labels=dict(info.labels) or None,
            ignore_value=info.ignore_value,
            on_bad_case="skip",
        )
    from medseg.config.models import MammographyConfig

    mammo = MammographyConfig() if workflow == "mammo" else None
    return DataConfig(
        root=root, layout="table", in_channels=1, num_classes=256, on_bad_case="skip", mammography=mammo
    )


def spatial_dims_of(data: DataConfig, workflow: str) -> int:
    """2 or 3: by the workflow, or whether the first listed image is a volume."""
    if workflow in ("isic", "mammo"):
        return 2
    if workflow == "ct":
        return 3
    cases, _ = list_cases(data)
    if not cases:
        raise DataError(f"{data.root}: no cases listed")
    first = cases[0].images[0]
    return 3 if reader_of(first.kind).is_3d(first.path) else 2


def _case(
    case: Case, dims: int, workflow: str, data: DataConfig, rng: np.random.Generator
) -> tuple[dict, np.ndarray, np.ndarray]:
    """(case entry, foreground sample (n, channels), label values counted)."""
    from nibabel.orientations import aff2axcodes

    from medseg.transforms.loader import read_channels

    array, props = read_channels(case.images, dims, 3 if workflow == "isic" else data.in_channels)
    assert case.label is not None
    lab, _ = read_channels(case.label, dims, label=True)
    if workflow == "mammo":  # measured as trained: flipped, cropped to the breast, capped in size
        array, lab = _mammo(array, lab, props)
    lab = lab[0]
    entry = {
        "id": case.id,
        "shape": list(array.shape[1:]),
        "spacing": [float(s) for s in props.spacing[:dims]],
        "orientation": "".join(aff2axcodes(props.source_affine))
        if dims == 3 and props.source_affine is not None
        else "2D",
        "modality": props.modality or {"ct": "CT", "mammo": "MG"}.get(workflow, "unknown"),
    }
    fg = array[:, lab > 0].T
    if len(fg) > SAMPLES_PER_CASE:
        fg = fg[rng.choice(len(fg), SAMPLES_PER_CASE, replace=False)]
    return entry, fg, np.bincount(lab.astype(np.int64).ravel())


def _mammo(array: np.ndarray, lab: np.ndarray, props: Any) -> tuple[np.ndarray, np.ndarray]:
    from medseg.config.models import MammographyConfig
    from medseg.transforms.loader import to_meta_tensor
    from medseg.transforms.steps import mammo_prepared

    done = mammo_prepared(MammographyConfig())(
        {"image": to_meta_tensor(array, props, ""), "label": to_meta_tensor(lab, props, "")}
    )
    return np.asarray(done["image"]), np.asarray(done["label"])


def _intensity(samples: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for c in range(samples.shape[1]):
        v = samples[:, c].astype(np.float64)
        p = np.percentile(v, PERCENTILES)
        out.append(
            {
                "channel": names[c] if c < len(names) else str(c),
                "percentile_00_5": float(p[0]),
                "median": float(p[1]),
                "percentile_99_5": float(p[2]),
                "mean": float(v.mean()),
                "std": float(v.std()),
            }
        )
    return out


def _classes(counts: list[np.ndarray]) -> dict[str, dict[str, Any]]:
    n_classes = max(len(c) for c in counts)
    counts = [np.pad(c, (0, n_classes - len(c))) for c in counts]
    return {
        str(k): {
            "voxels": int(sum(int(c[k]) for c in counts)),
            "cases_with": int(sum(int(c[k] > 0) for c in counts)),
            "share_of_cases": round(sum(int(c[k] > 0) for c in counts) / len(counts), 4),
        }
        for k in range(n_classes)
        if any(c[k] for c in counts)  # label values present; a 0/255 mask lists two
    }


def fingerprint(root: Path, workflow: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Measure the data set under ``root``.

    Args:
        root: the data folder (ISIC layout, a ``cases.csv`` table, an nnU-Net or Decathlon data set).
        workflow: ``auto`` (found from the folder), ``isic``, ``ct``, ``mammo``, ``table``,
            ``nnunet`` or ``decathlon``.
        seed: the sampling seed of foreground intensities.

    Returns:
        The fingerprint (JSON-ready): ``cases``, ``bad_cases``, ``spatial_dims``, ``channels`` and
        ``channel_names``, ``intensity`` per channel, ``classes`` and the medians the rules read;
        ``usable`` holds the ingest list (typed cases, not saved).

    Raises:
        DataError: no usable case (every bad case is listed), or every mask is empty.
    """
    workflow = detect_workflow(root) if workflow == "auto" else workflow
    data = data_config(Path(root), workflow)
    dims = spatial_dims_of(data, workflow)
    cases, bad = build_datalist(data, dims, data.in_channels)
    rng = np.random.default_rng(seed)
    entries, samples, counts = [], [], []
    for case in cases:
        entry, fg, count = _case(case, dims, workflow, data, rng)
        entries.append(entry)
        samples.append(fg)
        counts.append(count)
        log.info("fingerprint: %s %s", case.id, entry["shape"])
    pooled = np.concatenate(samples)
    if len(pooled) == 0:
        raise DataError(
            f"{root}: every label map of the {len(cases)} usable case(s) is empty (no foreground voxel); "
            "there is nothing to learn: check the label files (or data.labels / data.binarize_threshold)"
        )
    names = list(data.channel_names or [])
    if names and all(
        n.casefold() == "ct" for n in names
    ):  # nnU-Net's channel name says what the files do not
        for e in entries:
            e["modality"] = "CT"
    modalities = [e["modality"] for e in entries]
    return {
        "root": str(root),
        "workflow": workflow,
        "spatial_dims": dims,
        "channels": int(pooled.shape[1]),
        "channel_names": names,
        "n_cases": len(entries),
        "n_patients": len({c.patient for c in cases}),
        "modality": max(set(modalities), key=modalities.count),
        "median_shape": np.median(np.array([e["shape"] for e in entries], dtype=float), 0).tolist(),
        "median_spacing": np.median(np.array([e["spacing"] for e in entries], dtype=float), 0).tolist(),
        "intensity": _intensity(pooled, names),
        "classes": _classes(counts),
        "cases": entries,
        "bad_cases": [{"id": b.get("id"), "reason": b["reason"]} for b in bad],
        "usable": cases,  # the ingest list, for calibration; not saved
    }
