"""``medseg predict``: segment every selected input under a folder with a trained study's models.

For each input: read it and prepare intensities with the pipeline's own transforms (the reference
grid of ``medseg run``), sliding-window inference with every fold model (and flips when
``infer.tta_flips``), mean of the softmax, back onto the grid as stored, argmax, post-processing
(``infer.largest_component``, ``infer.fill_holes``), then the files of
:mod:`medseg.infer.outputs`. ``manifest.csv`` gets a row per input as it finishes and
``summary.json`` the totals. A failing input is recorded with its reason and the batch goes on; a
rerun skips what is done.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import MedsegError, exception_chain, medseg_cause
from medseg.infer.bundle import ModelBundle
from medseg.infer.discover import InputItem, discover, ref
from medseg.infer.manifest import Manifest
from medseg.infer.outputs import write_outputs
from medseg.infer.postprocess import postprocess
from medseg.infer.sliding import class_argmax, predict_probabilities
from medseg.infer.source_grid import label_to_source_3d, probabilities_to_source_2d
from medseg.io.atomic import write_json
from medseg.io.raster import set_pixel_limit
from medseg.registry import build_chain, build_inferer
from medseg.transforms.steps import load_transforms

log = logging.getLogger(__name__)


class Segmenter:
    """The models and transforms of a bundle, ready to segment one input after another.

    Args:
        bundle: the study's configuration and fold checkpoints.
        device: where the models run.

    Raises:
        MedsegError: the bundle's preprocessing lacks intensity statistics (not a finished run).
    """

    def __init__(self, bundle: ModelBundle, device: torch.device) -> None:
        from monai.transforms import Compose

        self.cfg = bundle.cfg
        self.device = device
        self.models = bundle.load(device)
        self.inferer = build_inferer(self.cfg)
        loaders = load_transforms(self.cfg, with_label=False)
        preprocess = build_chain(self.cfg.transforms.preprocess, "preprocess")
        for step in preprocess:
            if getattr(step, "op", True) is None:
                raise MedsegError(
                    f"{bundle.source}: {type(step).__name__} in transforms.preprocess has no statistics; "
                    "they are filled when `medseg run` ingests, so give a run folder of a finished run"
                )
        self.load, self.prepare = loaders[0], Compose(loaders[1:] + preprocess)

    def __call__(self, item: InputItem) -> tuple[np.ndarray, dict[str, Any]]:
        """(label map on the source grid, what the writers need about the source)."""

        path: Any = [str(f) for f in item.files] if item.kind == "dicom_series" else str(item.files[0])
        loaded = self.load({"image": path})["image"]
        meta = dict(loaded.meta)
        source: dict[str, Any] = {}
        image = self.prepare({"image": loaded})["image"]
        probs = predict_probabilities(self.models, image, self.cfg, self.inferer, self.device, on_device=True)
        if self.cfg.transforms.spatial_dims == 2:
            probs = probabilities_to_source_2d(probs.cpu(), dict(image.meta))
            label = postprocess(class_argmax(probs), self.cfg).numpy()
            source["picture"] = np.moveaxis(np.asarray(loaded), 0, -1)
            source["affine"] = _affine_2d(item, meta)
            return label, source
        canonical_affine = np.asarray(loaded.affine, dtype=float)
        canonical = postprocess(class_argmax(probs).cpu(), self.cfg).numpy().astype(np.uint8)
        source.update(
            affine=np.asarray(meta["source_affine"], dtype=float),
            canonical_label=canonical,
            canonical_affine=canonical_affine,
        )
        return label_to_source_3d(canonical, canonical_affine, source["affine"]), source


def _affine_2d(item: InputItem, meta: dict[str, Any]) -> np.ndarray:
    """NIfTI affine of a 2D label written as (columns, rows): the file's own for NIfTI inputs."""
    if item.kind == "nifti":
        import nibabel as nib

        return np.asarray(nib.load(str(item.files[0])).affine, dtype=float)  # type: ignore[attr-defined]
    row, col = (float(s) for s in np.asarray(meta.get("spacing", (1.0, 1.0))).flatten()[:2])
    return np.diag([col, row, 1.0, 1.0])


def redact(text: str, item: InputItem, root: Path) -> str:
    """``text`` with every path, folder and file name of ``item`` under ``root`` replaced by
    ``<p...>``, a hash of that file's or folder's path inside ``root`` (a file's is its ``ref``);
    the text itself for inputs named by their own path.

    Example:
        >>> rel = "Doe^John/CT/IM1.dcm"
        >>> item = InputItem("1.2.3", "dicom_series", [Path("/in") / rel], rel)
        >>> text = redact("Doe^John/CT: gap after IM1.dcm", item, Path("/in"))
        >>> text == f"<{ref('Doe^John/CT')}>: gap after <{item.ref}>"
        True
    """
    if item.named_by_path or not item.files:
        return text
    tokens: dict[str, str] = {}
    for path in item.files:
        rel = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        for part in (rel, *rel.parents[:-1]):
            token = f"<{ref(part.as_posix())}>"
            for name in (str(root / part), part.as_posix(), part.name):
                tokens.setdefault(name, token)
    for name in sorted(tokens, key=len, reverse=True):
        text = re.sub(rf"(?<![\w^.\-]){re.escape(name)}(?![\w^.\-])", tokens[name], text)
    return text


def predict_folder(
    bundle: ModelBundle, input_dir: Path, out_dir: Path, device: torch.device, log_paths: bool = False
) -> dict[str, Any]:
    """Segment every selected input under ``input_dir`` into ``out_dir``.

    Args:
        bundle: the study's configuration and fold checkpoints.
        input_dir: a folder tree of DICOM, NIfTI or PNG/JPEG files.
        out_dir: where the outputs, ``manifest.csv`` and ``summary.json`` go.
        device: where inference runs.
        log_paths: show DICOM paths inside ``input_dir`` in the manifest and the log; otherwise
            each input's ``ref`` stands for them (see :mod:`medseg.infer.discover`).

    Returns:
        Counts of inputs done, done earlier, skipped and failed, with timing and the model.

    Raises:
        DataError: ``input_dir`` is not a folder. A failing input is recorded, never raised.
    """
    input_dir, out_dir = Path(input_dir).resolve(), Path(out_dir)
    set_pixel_limit(bundle.cfg.data.max_image_pixels)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir)
    counts = {"done": 0, "done_earlier": 0, "skipped": 0, "failed": 0}
    show = _Show(input_dir, log_paths)
    todo = _select(discover(input_dir, bundle.cfg), manifest, counts, show)
    log.info(
        "predict: %d input(s) to segment, %d done earlier, %d skipped, with %d fold model(s) on %s",
        len(todo),
        counts["done_earlier"],
        counts["skipped"],
        len(bundle.checkpoints),
        device,
    )
    busy = _segment_all(bundle, todo, device, manifest, counts, show, out_dir)
    summary: dict[str, Any] = {
        **counts,
        "inputs_per_minute": round(60.0 * counts["done"] / busy, 2) if busy > 0 else None,
        "seconds": round(busy, 2),
        "model": bundle.source,
        "folds": sorted(bundle.checkpoints),
        "device": str(device),
    }
    write_json(out_dir / "summary.json", summary)
    return summary


class _Show:
    """How paths appear: inside the input folder only, and DICOM paths only with ``--log-paths``."""

    def __init__(self, root: Path, log_paths: bool) -> None:
        self.root, self.log_paths = root, log_paths

    def reason(self, item: InputItem, text: str) -> str:
        text = " ".join(text.replace(f"{self.root}/", "").replace(str(self.root), ".").split())[:500]
        return text if self.log_paths else redact(text, item, self.root)

    def row(self, item: InputItem, status: str, reason: str = "", **extra: Any) -> dict[str, Any]:
        """The manifest row of ``item``, ``reason`` as :meth:`reason` shows it; the input's path
        only with ``--log-paths`` or when its own path names it."""
        return {
            "key": item.key,
            "kind": item.kind,
            "status": status,
            "reason": self.reason(item, reason),
            "modality": item.modality,
            "study_uid": item.study_uid,
            "series_uid": item.series_uid,
            "sop_uid": item.sop_uid if item.kind != "dicom_series" else "",
            "n_files": len(item.files),
            "ref": item.ref,
            "source": item.source if self.log_paths or item.named_by_path else "",
            **extra,
        }


def _select(
    items: list[InputItem], manifest: Manifest, counts: dict[str, int], show: _Show
) -> list[InputItem]:
    """Record skipped inputs and those done by an earlier run; the inputs left to segment."""
    todo: list[InputItem] = []
    for item in items:
        if item.skip is not None:
            skipped = show.row(item, "skipped", item.skip)
            manifest.record(skipped)
            counts["skipped"] += 1
            log.info("%s (%s): skipped: %s", item.key, item.kind, skipped["reason"])
        elif (row := manifest.finished_earlier(item.key)) is not None:
            manifest.record(row)
            counts["done_earlier"] += 1
        else:
            todo.append(item)
    return todo


def _segment_all(
    bundle: ModelBundle,
    todo: list[InputItem],
    device: torch.device,
    manifest: Manifest,
    counts: dict[str, int],
    show: _Show,
    out_dir: Path,
) -> float:
    """Segment and write each input, recording it as it finishes; the seconds spent on those done."""
    from tqdm import tqdm

    segmenter = Segmenter(bundle, device) if todo else None
    busy = 0.0
    for item in tqdm(todo, unit="series", disable=not sys.stderr.isatty(), desc="predict"):
        t0 = time.perf_counter()
        try:
            assert segmenter is not None
            label, source = segmenter(item)
            written, note = write_outputs(item, label, source, bundle.cfg, out_dir)
        except Exception as err:  # one bad input never stops the batch
            failed = show.row(item, "failed", _plain(err), seconds=round(time.perf_counter() - t0, 2))
            manifest.record(failed)
            counts["failed"] += 1
            log.warning("%s (%s): failed: %s", item.key, item.kind, failed["reason"])
            continue
        seconds = time.perf_counter() - t0
        busy += seconds
        manifest.record(show.row(item, "done", note, seconds=round(seconds, 2), **written))
        counts["done"] += 1
        log.info("%s (%s): done in %.1fs", item.key, item.kind, seconds)
    return busy


def _plain(err: BaseException) -> str:
    """An error as the message that says what to do."""

    # a MedsegError says what to do; otherwise the innermost error (MONAI wraps transform errors)
    chosen = medseg_cause(err) or exception_chain(err)[-1]
    return str(chosen) if isinstance(chosen, MedsegError) else f"{type(chosen).__name__}: {chosen}"


def summary_line(summary: dict[str, Any]) -> str:
    """The one line ``medseg predict`` prints at the end."""
    rate = summary["inputs_per_minute"]
    return (
        f"done {summary['done']}, done earlier {summary['done_earlier']}, skipped {summary['skipped']}, "
        f"failed {summary['failed']}; {rate if rate is not None else '-'} inputs per minute"
    )
