"""Post-processing of a label map with MONAI: largest connected component and hole filling per class.

Both are off by default (``infer.largest_component``: true for each class, a list of classes,
``foreground`` for all foreground as one, ``auto`` to choose from cross-validation, see
:mod:`medseg.evaluate.postprocessing`; ``infer.fill_holes``: true, or ``auto`` to choose after the
largest component); when on they apply to
the held-out predictions of ``medseg run`` and to ``medseg predict`` alike, so the cross-validation
figures describe what ``predict`` writes.
"""

from __future__ import annotations

from typing import Any

import torch

from medseg.config.models import InferConfig


def postprocess(label: torch.Tensor, infer: InferConfig, num_classes: int) -> torch.Tensor:
    """A label map after the configured post-processing steps.

    Args:
        label: spatial integer class map.
        infer: the ``infer`` settings naming the steps (``largest_component``, ``fill_holes``).
        num_classes: classes with background.

    Returns:
        The processed map, same shape and dtype.

    Example:
        >>> lab = torch.tensor([[1, 1, 0, 1]])
        >>> postprocess(lab, InferConfig(largest_component=True), 2).tolist()
        [[1, 1, 0, 0]]
    """
    keep = infer.largest_component
    if keep == "auto":  # not chosen yet: held-out predictions are scored without and with it
        keep = False
    holes = infer.fill_holes is True  # auto: not chosen yet, as above
    if not (keep or holes):
        return label
    classes = list(range(1, num_classes))
    out: Any = torch.as_tensor(label)[None]
    if keep:
        out = keep_largest(out, keep if isinstance(keep, list) else classes, joint=keep == "foreground")
    if holes:
        out = fill_holes(out, classes)
    return torch.as_tensor(out).as_subclass(torch.Tensor)[0].to(label.dtype)


def keep_largest(label: Any, classes: list[int], joint: bool) -> Any:
    """A channel-first label map keeping the largest connected component of ``classes``: of each
    class on its own, or (``joint``) of their union. MONAI edits ``label`` in place."""
    from monai.transforms import KeepLargestConnectedComponent

    return KeepLargestConnectedComponent(applied_labels=classes, is_onehot=False, independent=not joint)(
        label
    )


def fill_holes(label: Any, classes: list[int]) -> Any:
    """A channel-first label map with the holes enclosed by each of ``classes`` filled (MONAI's
    ``FillHoles``: a hole takes the class around it; holes open to the border stay)."""
    from monai.transforms import FillHoles

    return FillHoles(applied_labels=classes)(label)
