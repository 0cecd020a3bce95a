"""``medseg export``: a study's fold models as one TorchScript or ONNX file for deployment.

The exported module takes a batch of patches (N, in_channels, *roi_size) prepared as the pipeline
prepares images (``config.yaml`` beside it says how) and returns the mean softmax of the fold
models, (N, num_classes, *roi_size); slide it over larger images as ``medseg predict`` does. A
JSON file beside the model records the input size, classes and folds, and the preprocessing to
rebuild: axis order, intensity scaling, resize or resampling (interpolation mode, corner
alignment) and how the probabilities go back onto the image's grid. The exporters' own log lines
(about 160 for ONNX, and notices such as "torchvision is not installed") are left out; their errors
stay, and a failed export is one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.config.load import dump_config
from medseg.config.models import PipelineConfig
from medseg.errors import MedsegError
from medseg.infer.bundle import ModelBundle
from medseg.io.atomic import atomic_path, write_json, write_text
from medseg.registry import network_args
from medseg.transforms.resample import linear_mode

FORMATS = ("torchscript", "onnx")


class SoftmaxEnsemble(nn.Module):
    """Mean softmax over the fold networks.

    Args:
        models: the fold networks, in eval mode.
    """

    def __init__(self, models: list[nn.Module]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.softmax(self.models[0](x), dim=1)
        for model in self.models[1:]:
            total = total + torch.softmax(model(x), dim=1)
        return total / len(self.models)


def example_input(bundle: ModelBundle, batch: int = 1) -> torch.Tensor:
    """A seeded batch of the network's input size, for tracing and checks."""
    channels = int(network_args(bundle.cfg.network).get("in_channels", bundle.cfg.data.in_channels))
    return torch.randn(batch, channels, *bundle.cfg.roi_size, generator=torch.Generator().manual_seed(0))


def export_model(bundle: ModelBundle, fmt: str, out: Path) -> Path:
    """Write the ensemble of ``bundle`` as one model file.

    Args:
        bundle: the study's configuration and fold checkpoints.
        fmt: ``torchscript`` or ``onnx``.
        out: the model file; ``out.json`` and ``out.config.yaml`` go beside it.

    Returns:
        ``out``.

    Raises:
        MedsegError: an unknown format, or a model that cannot be exported.
    """

    if fmt not in FORMATS:
        raise MedsegError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    module = SoftmaxEnsemble(bundle.load(torch.device("cpu"))).eval()
    x = example_input(bundle)
    out = Path(out)
    with torch.no_grad(), atomic_path(out) as tmp:
        if fmt == "torchscript":
            import warnings

            with warnings.catch_warnings():  # deprecation and constant-shape-check notes of tracing
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(module, x, check_trace=False)
            traced.save(str(tmp))
        else:
            _export_onnx(module, x, tmp)
    info: dict[str, Any] = {
        "format": fmt,
        "input": {"shape": ["N", *x.shape[1:]], "dtype": "float32"},
        "output": "mean softmax over folds, (N, num_classes, *roi_size)",
        "classes": {"0": "background", **{str(k): v for k, v in bundle.cfg.class_names.items()}},
        "folds": sorted(bundle.checkpoints),
        "model": bundle.source,
        "preprocessing": preprocessing(bundle.cfg),
        "infer": bundle.cfg.infer.model_dump(mode="json"),
    }
    write_json(out.with_name(out.name + ".json"), info)
    write_text(out.with_name(out.name + ".config.yaml"), dump_config(bundle.cfg))
    return out


AXES = {
    2: (
        ["N", "C", "row", "column"],
        "the image as stored, not transposed: pixel rows top to bottom, then columns left to right",
    ),
    3: (
        ["N", "C", "x", "y", "z"],
        "the volume reoriented to the closest canonical frame, RAS+ (nibabel.as_closest_canonical): "
        "voxel axes increase towards the patient's right, anterior and superior",
    ),
}


def preprocessing(cfg: PipelineConfig) -> dict[str, Any]:
    """How an image becomes the model's input, and its probabilities a result on the image's grid,
    as ``medseg predict`` does it (one entry per step, in order)."""
    t = cfg.transforms
    n = t.spatial_dims
    axes, order = AXES[n]
    interp = {"library": "torch.nn.functional.interpolate", "mode": linear_mode(n), "align_corners": False,
              "antialias": False}  # fmt: skip
    if t.spatial_size is not None:
        grid: dict[str, Any] = {"resize": {"size": list(t.spatial_size), **interp}}
    elif t.spacing is not None:
        rule = "round(size * spacing / target) per axis, at least 1; the field of view is kept"
        grid = {"resample": {"spacing_mm": list(t.spacing), "size": rule, **interp}}
    else:
        grid = {"resize": None}
    return {
        "axes": axes,
        "axis_order": order,
        "intensity": "8- and 16-bit pictures divided by 255 or 65535; DICOM and NIfTI values as stored "
        "(CT in HU); then the steps of `preprocess`, in order",
        "channels": cfg.image_channels,
        "mammography": cfg.data.mammography.model_dump(mode="json") if cfg.data.mammography else None,
        "preprocess": t.preprocess,
        **grid,
        "sliding_window": {
            "roi_size": list(cfg.roi_size),
            "overlap": cfg.infer.overlap,
            "mode": cfg.infer.mode,
            "padding": "constant 0 where the image is smaller than roi_size",
        },
        "output": "the mean softmax over windows and folds, resized back to the image's size with the "
        "same interpolation, then argmax over classes",
    }


@contextmanager
def quiet_exporters(names: tuple[str, ...] = ("onnx_ir", "onnxscript", "torch")) -> Iterator[None]:
    """Errors only from the exporters' loggers (and their children) while the block runs."""
    import logging

    loggers = [logging.getLogger(n) for n in names]
    loggers += [
        logging.getLogger(n)
        for n in list(logging.root.manager.loggerDict)
        if n.split(".")[0] in names and n not in names
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.ERROR))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_onnx(module: nn.Module, x: torch.Tensor, path: Path) -> None:
    import warnings

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise MedsegError("ONNX export needs onnx and onnxscript: pip install 'medseg[export]'") from None
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), quiet_exporters():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                module,
                (x,),
                dynamic_shapes={"x": {0: batch}},
                input_names=["image"],
                output_names=["probabilities"],
                dynamo=True,
                verbose=False,
                report=False,
            )
        except Exception as err:  # the exporter's error, in one line
            first = (str(err).strip().splitlines() or [""])[0][:300]
            raise MedsegError(
                f"ONNX export of the fold ensemble failed ({type(err).__name__}: {first}); "
                "try --format torchscript"
            ) from None
        assert program is not None
        program.save(str(path))
