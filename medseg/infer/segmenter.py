"""One input through a study's models, in three stages that can run side by side.

- :class:`Preparer` (worker processes): read the input and prepare it with the pipeline's own
  transforms onto the reference grid of ``medseg run``; no model is needed.
- :meth:`Segmenter.infer` (the process holding the models): sliding-window inference with every
  fold model (and flips when ``infer.tta_flips``), mean of the softmax; 3D: the argmax on the device.
- :meth:`Segmenter.restore` (a writer thread): back onto the grid as stored, argmax (2D),
  post-processing (``infer.largest_component``, ``infer.fill_holes``).

A stage that fails leaves its reason on the input, never an exception past it, so one bad input
never stops a batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config.models import PipelineConfig
from medseg.errors import MEMORY_ADVICE, MedsegError, exception_chain, medseg_cause, out_of_memory
from medseg.infer.bundle import ModelBundle
from medseg.infer.discover import InputItem
from medseg.infer.postprocess import postprocess
from medseg.infer.sliding import class_argmax, predict_scored
from medseg.infer.source_grid import label_to_source_3d, probabilities_to_source_2d
from medseg.io.dicom_seg import Segments, model_digest
from medseg.io.raster import set_pixel_limit
from medseg.io.source import Properties
from medseg.registry import build_chain, build_inferer
from medseg.runtime import autocast_dtype, cpu_cores
from medseg.transforms.loader import read_channels, to_meta_tensor
from medseg.transforms.steps import load_transforms

STAGES = ("read", "preprocess", "infer", "write")


@dataclass
class Prepared:
    """An input on its way: the prepared image, what the writers need of the source, the seconds
    each stage took and, once a stage failed, why."""

    item: InputItem
    image: Any = None
    props: Properties | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    picture: np.ndarray | None = None
    raw: np.ndarray | None = None  # the image as read, channel-first, for predict.statistics
    seconds: dict[str, float] = field(default_factory=dict)
    uncertainty: float = float("nan")  # the first fold model's flips, as on held-out cases
    fold_disagreement: float = float("nan")
    findings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def plain(err: BaseException) -> str:
    """An error as the message that says what to do: a MedsegError's own; otherwise the innermost
    error (MONAI wraps transform errors), its type named."""
    chosen = medseg_cause(err) or exception_chain(err)[-1]
    if isinstance(chosen, MedsegError):
        return str(chosen)
    text = f"{type(chosen).__name__}: {chosen}"
    if out_of_memory(err):  # each worker process holds one input's arrays
        return f"out of memory ({text[:200]}); {MEMORY_ADVICE}, or give fewer --workers"
    return text


def check_statistics(cfg: PipelineConfig, source: str) -> None:
    """Refuse a configuration whose preprocessing still lacks its intensity statistics."""
    for step in build_chain(cfg.transforms.preprocess, "preprocess"):
        if getattr(step, "op", True) is None:
            raise MedsegError(
                f"{source}: {type(step).__name__} in transforms.preprocess has no statistics; "
                "they are filled when `medseg run` ingests, so give a run folder of a finished run"
            )


class Preparer:
    """Read and prepare inputs (picklable: it is built again in each worker process).

    Args:
        cfg: the configuration the models were trained with.
    """

    def __init__(self, cfg: PipelineConfig) -> None:
        self.cfg = cfg
        self._chain: Any = None

    def _transforms(self) -> Any:
        if self._chain is None:
            from monai.transforms import Compose

            set_pixel_limit(self.cfg.data.max_image_pixels)
            loaders = load_transforms(self.cfg.data, self.cfg.transforms, with_label=False)
            preprocess = build_chain(self.cfg.transforms.preprocess, "preprocess")
            self._chain = Compose(loaders[1:] + preprocess)
        return self._chain

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "_chain": None}

    def read(self, item: InputItem) -> tuple[Any, Properties]:
        """The input as a MetaTensor on its reference grid before any intensity change, and what
        its reader learned (the writers need it)."""
        mammo = self.cfg.data.mammography
        voi = bool(mammo and mammo.voi_lut)
        array, props = read_channels(
            item.sources, self.cfg.transforms.spatial_dims, self.cfg.image_channels, voi
        )
        return to_meta_tensor(array, props, str(item.files[0]) if item.files else item.key), props

    def __call__(self, item: InputItem) -> Prepared:
        out = Prepared(item)
        prepare = self._transforms()
        try:
            t0 = time.perf_counter()
            loaded, out.props = self.read(item)
            t1 = time.perf_counter()
            out.meta = dict(loaded.meta)
            if self.cfg.transforms.spatial_dims == 2:
                out.picture = np.moveaxis(np.asarray(loaded), 0, -1)
            if self.cfg.predict.statistics:  # before any intensity change
                out.raw = np.array(loaded, copy=True)
            out.image = prepare({"image": loaded})["image"]
            out.seconds = {"read": t1 - t0, "preprocess": time.perf_counter() - t1}
        except Exception as err:  # reported on the input's manifest row
            out.error = plain(err)
        return out


class Segmenter:
    """The fold models of a bundle on a device, for one prepared input after another.

    Args:
        bundle: the study's configuration and fold checkpoints.
        device: where the models run.
        segments: what its DICOM SEGs say of their segments and the algorithm.
    """

    def __init__(self, bundle: ModelBundle, device: torch.device, segments: Segments) -> None:
        self.cfg = bundle.cfg
        self.device = device
        self.models = bundle.load(device)
        self.inferer = build_inferer(self.cfg.infer, self.cfg.roi_size)
        self.segments = segments

    def infer(self, prep: Prepared, progress: Callable[[float], None] | None = None) -> Any:
        """The device's part: 2D mean probabilities, 3D the label map (the probabilities with
        ``predict.write_probabilities``), on the CPU; the disagreement of the first model's flips
        (with ``evaluate.uncertainty``, as on the study's held-out cases) and of the fold models
        go on ``prep``."""
        cfg = self.cfg
        probs, scores = predict_scored(
            self.models, prep.image, cfg.transforms, cfg.infer, self.inferer, self.device,
            autocast_dtype(cfg.train.precision, cfg.train.amp, self.device),
            on_device=True, score_flips=cfg.evaluate.uncertainty, progress=progress,
        )  # fmt: skip
        prep.uncertainty, prep.fold_disagreement = scores.flips, scores.folds
        if self.cfg.transforms.spatial_dims == 2 or self.cfg.predict.write_probabilities:
            return probs.cpu()
        return class_argmax(probs).cpu()

    def restore(self, prep: Prepared, result: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """(label map on the source grid, what the writers need about the source)."""
        assert prep.props is not None
        keep = self.cfg.predict.write_probabilities
        post = self.cfg.infer
        classes = self.cfg.data.num_classes
        if self.cfg.transforms.spatial_dims == 2:
            probs = probabilities_to_source_2d(result, dict(prep.image.meta))
            label = postprocess(class_argmax(probs), post, classes).numpy()
            found = {"picture": prep.picture, "affine": prep.props.label_affine()}
            return label, found | ({"probabilities": probs.numpy()} if keep else {})
        canonical_affine = np.asarray(prep.image.affine, dtype=float)
        argmax = class_argmax(result) if keep else result
        canonical = postprocess(argmax, post, classes).numpy().astype(np.uint8)
        source = {
            **({"probabilities": result.numpy()} if keep else {}),
            "affine": prep.props.label_affine(),
            "canonical_label": canonical,
            "canonical_affine": canonical_affine,
        }
        return label_to_source_3d(canonical, canonical_affine, source["affine"]), source


def default_workers(device: torch.device) -> int:
    """``--workers`` by default. On a GPU, reading processes: one per spare core, at most four (0
    on one core). On the CPU, processes segmenting whole inputs with one thread each: one per core,
    at most eight (each holds an input's arrays)."""
    if device.type == "cpu":
        return min(8, cpu_cores())
    return max(0, min(4, cpu_cores() - 1))


def algorithm_parameters(bundle: ModelBundle) -> dict[str, str]:
    """The run and folds a bundle's models come from, as a SEG's algorithm parameters: the run
    folder's name and its MLflow pipeline run, or the model URI; and a digest of the fold weights
    and the settings that shape a prediction (the SEG's UIDs derive from these)."""
    from medseg.run_dir import RunDir

    run = bundle.source
    if Path(run).is_dir():
        parent = RunDir(Path(run)).read_state().get("parent_run_id")
        run = Path(run).resolve().name + (f" (MLflow run {parent})" if parent else "")
    shaping = bundle.cfg.model_dump(mode="json", include={"model", "transforms", "infer"})
    digest = model_digest([bundle.checkpoints[k] for k in sorted(bundle.checkpoints)], shaping)
    return {"run": run[:64], "folds": ",".join(str(k) for k in sorted(bundle.checkpoints)), "model": digest}
