"""What ``medseg predict`` writes for one input, all named by the input's key:

- ``<key>.nii.gz``: the label map on the grid of the input as stored (DICOM series: the series'
  voxel order and affine; NIfTI: the file's own affine; 2D DICOM: (columns, rows) with the pixel
  spacing, as medseg and nibabel read 2D NIfTI), or ``<key>.png`` for PNG/JPEG inputs (0/255 for
  one class, class values otherwise);
- ``<key>_seg.dcm``: a DICOM SEG referencing the source series or image (``predict.write_seg``);
- ``<key>_overlay.png``: for 2D inputs, the picture with the predicted outline (``predict.overlays``).

Every file is written to a temporary name and renamed, so a killed batch leaves no partial file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import PipelineConfig
from medseg.infer.discover import InputItem

OVERLAY_MAX_SIZE = 1024  # longer side of overlay pictures, in pixels


def class_names(cfg: PipelineConfig) -> dict[int, str]:
    """Segment names: ``data.labels`` keys when classes were picked, else ``class_<k>``."""
    if cfg.data.labels:
        return {i + 1: str(name) for i, name in enumerate(cfg.data.labels)}
    return {k: f"class_{k}" for k in range(1, cfg.data.num_classes)}


def write_outputs(
    item: InputItem, label: np.ndarray, source: dict[str, Any], cfg: PipelineConfig, out_dir: Path
) -> tuple[dict[str, str], str]:
    """Write the outputs of ``item`` from ``label`` on its source grid: (file names relative to
    ``out_dir`` by kind, a note on what was not written and why).

    ``source``: ``affine`` (the source grid's RAS affine, 3D and NIfTI) and, for 3D DICOM SEG, the
    canonical ``label`` and ``canonical_affine``. Files of a failed call are removed by the caller.
    """
    from medseg.io.volume import write_nifti

    written: dict[str, str] = {}
    note = ""
    names = class_names(cfg)
    label = np.asarray(label, dtype=np.uint8)
    if item.kind == "raster":
        from medseg.io.raster import write_png

        scale = 255 if cfg.data.num_classes == 2 else 1
        write_png(out_dir / f"{item.key}.png", label * np.uint8(scale))
        written["mask"] = f"{item.key}.png"
    elif label.ndim == 2:  # 2D NIfTI or DICOM image: NIfTI stores (x = column, y = row)
        write_nifti(out_dir / f"{item.key}.nii.gz", label.T.copy(), source["affine"])
        written["mask"] = f"{item.key}.nii.gz"
    else:
        write_nifti(out_dir / f"{item.key}.nii.gz", label, source["affine"])
        written["mask"] = f"{item.key}.nii.gz"
    missing = missing_uids(item) if cfg.predict.write_seg and item.is_dicom else None
    if missing:
        note = f"no DICOM SEG: the source has no {missing} to reference"
    elif cfg.predict.write_seg and item.is_dicom:
        from medseg.io.dicom_seg import write_seg, write_seg_image

        seg = out_dir / f"{item.key}_seg.dcm"
        written["seg"] = seg.name
        if item.kind == "dicom_series":
            write_seg(source["canonical_label"], source["canonical_affine"], list(item.files), seg, names)
        else:
            write_seg_image(label, item.files[0], seg, names)
    if cfg.predict.overlays and label.ndim == 2:
        path = out_dir / f"{item.key}_overlay.png"
        write_overlay(path, source["picture"], label)
        written["overlay"] = path.name
    return written, note


def missing_uids(item: InputItem) -> str | None:
    """The UIDs a DICOM SEG must reference that the source lacks (anonymised files), or None."""
    from medseg.io.dicom import read_header

    ds = read_header(item.files[0])
    absent = [t for t in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID") if not ds.get(t)]
    return ", ".join(absent) or None


def write_overlay(path: Path, picture: np.ndarray, label: np.ndarray) -> None:
    """The picture as stored with the outline of the prediction, the longer side at most 1024."""
    from medseg.evaluate.overlay import draw_overlay
    from medseg.io.raster import write_png

    step = max(1, int(np.ceil(max(label.shape) / OVERLAY_MAX_SIZE)))
    small_picture = np.asarray(picture)[::step, ::step]
    write_png(path, draw_overlay(small_picture, None, label[::step, ::step]))
