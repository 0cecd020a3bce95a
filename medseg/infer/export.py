"""``medseg export``: a study's fold models as one TorchScript or ONNX file for deployment.

The exported module takes a batch of patches (N, in_channels, *roi_size) prepared as the pipeline
prepares images (``config.yaml`` beside it says how) and returns the mean softmax of the fold
models, (N, num_classes, *roi_size); slide it over larger images as ``medseg predict`` does. A
JSON file beside the model records the input size, classes, preprocessing and folds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medseg.config.load import dump_config
from medseg.errors import MedsegError
from medseg.infer.bundle import ModelBundle
from medseg.io.atomic import atomic_path, write_json, write_text
from medseg.registry import network_args

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
        "infer": bundle.cfg.infer.model_dump(mode="json"),
    }
    write_json(out.with_name(out.name + ".json"), info)
    write_text(out.with_name(out.name + ".config.yaml"), dump_config(bundle.cfg))
    return out


def _export_onnx(module: nn.Module, x: torch.Tensor, path: Path) -> None:
    import logging
    import warnings

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise MedsegError("ONNX export needs onnx and onnxscript: pip install 'medseg[export]'") from None
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module,
            (x,),
            dynamic_shapes={"x": {0: batch}},
            input_names=["image"],
            output_names=["probabilities"],
            dynamo=True,
            verbose=False,
        )
        assert program is not None
        program.save(str(path))
