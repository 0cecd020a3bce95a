"""Intensity stages for CT: named or numeric HU windows (stacked as channels) and clip-and-z-score.

``CTWindow`` maps each window [level - width/2, level + width/2] to [0, 1], one output channel per
window. ``ClipZScore`` is nnU-Net's CT scheme: clip to the 0.5 and 99.5 percentiles of the
foreground intensities of the training cases, then subtract their mean and divide by their std;
the statistics are gathered once at ingest (:mod:`medseg.transforms.statistics`) and saved with the
run. Per-image z-score for MR is MONAI's ``NormalizeIntensityd``; where channels need different
schemes (an nnU-Net data set with a ``CT`` channel beside others), ``ClipZScored`` and ``ZScored``
take the ``channels`` they normalise and leave the others as they are.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

# (width, level) in HU
WINDOWS: dict[str, tuple[float, float]] = {
    "soft_tissue": (400.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
}

WindowSpec = str | Sequence[float]


def parse_window(spec: WindowSpec) -> tuple[float, float]:
    """A preset name or ``[width, level]`` -> (width, level); ValueError with the choices otherwise."""
    if isinstance(spec, str):
        if spec not in WINDOWS:
            raise ValueError(f"unknown window '{spec}'; presets: {', '.join(WINDOWS)} or [width, level]")
        return WINDOWS[spec]
    values = [float(v) for v in spec]
    if len(values) != 2 or values[0] <= 0:
        raise ValueError(f"window {list(spec)}: expected [width, level] with a positive width")
    return values[0], values[1]


class CTWindow(Transform):
    """(1, *spatial) HU -> (n_windows, *spatial) in [0, 1].

    Args:
        windows: preset names (``soft_tissue``, ``lung``, ...) or ``[width, level]`` pairs.

    Example:
        >>> out = CTWindow(["soft_tissue", [100, 0]])(torch.tensor([[-200.0, 40.0, 240.0]]))
        >>> [[round(v, 4) for v in row] for row in out.tolist()]
        [[0.0, 0.5, 1.0], [0.0, 0.9, 1.0]]
    """

    def __init__(self, windows: Sequence[WindowSpec] = ("soft_tissue",)) -> None:
        if not windows:
            raise ValueError("windows: give at least one window")
        self.windows = [parse_window(w) for w in windows]

    def __call__(self, img: Any) -> Any:
        x = torch.as_tensor(img, dtype=torch.float32)
        if x.shape[0] != 1:
            raise ValueError(f"CTWindow expects one HU channel, got {x.shape[0]}")
        out = torch.cat([((x - (lvl - w / 2)) / w).clamp(0, 1) for w, lvl in self.windows], dim=0)
        return MetaTensor(out, meta=img.meta) if isinstance(img, MetaTensor) else out


class ClipZScore(Transform):
    """Clip to [lower, upper], then (x - mean) / std (nnU-Net's CT normalisation).

    Args:
        lower: lower clip bound.
        upper: upper clip bound.
        mean: subtracted after clipping.
        std: divided by after that.

    Example:
        >>> ClipZScore(-100, 100, 0, 50)(torch.tensor([-300.0, 50.0, 300.0])).tolist()
        [-2.0, 1.0, 2.0]
    """

    def __init__(
        self, lower: float, upper: float, mean: float, std: float, channels: Sequence[int] | None = None
    ) -> None:
        if upper <= lower or std <= 0:
            raise ValueError(f"ClipZScore: need lower < upper and std > 0, got {lower}, {upper}, {std}")
        self.lower, self.upper, self.mean, self.std = lower, upper, mean, std
        self.channels = None if channels is None else list(channels)

    def __call__(self, img: Any) -> Any:
        x = torch.as_tensor(img, dtype=torch.float32)
        if self.channels is None:
            out = (x.clamp(self.lower, self.upper) - self.mean) / self.std
        else:
            out = x.clone()
            out[self.channels] = (x[self.channels].clamp(self.lower, self.upper) - self.mean) / self.std
        return MetaTensor(out, meta=img.meta) if isinstance(img, MetaTensor) else out


class ZScore(Transform):
    """Per image, each of ``channels`` to zero mean and unit std (nnU-Net's ZScoreNormalization);
    other channels as they are.

    Example:
        >>> out = ZScore([1])(torch.tensor([[1.0, 3.0], [2.0, 4.0]]))
        >>> out.tolist()
        [[1.0, 3.0], [-1.0, 1.0]]
    """

    def __init__(self, channels: Sequence[int]) -> None:
        self.channels = list(channels)

    def __call__(self, img: Any) -> Any:
        x = torch.as_tensor(img, dtype=torch.float32)
        out = x.clone()
        for c in self.channels:
            std = x[c].std(unbiased=False)
            out[c] = (x[c] - x[c].mean()) / torch.clamp(std, min=1e-8)
        return MetaTensor(out, meta=img.meta) if isinstance(img, MetaTensor) else out


class ZScored(MapTransform):
    """Dictionary version of :class:`ZScore`.

    Args:
        keys: the keys normalised (``image``).
        channels: the channels z-scored per image.
        allow_missing_keys: skip absent keys instead of failing.
    """

    def __init__(
        self, keys: KeysCollection, channels: Sequence[int], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = ZScore(channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class CTWindowd(MapTransform):
    """Dictionary version of :class:`CTWindow`.

    Args:
        keys: the keys windowed (``image``).
        windows: preset names or ``[width, level]`` pairs.
        allow_missing_keys: skip absent keys instead of failing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        windows: Sequence[WindowSpec] = ("soft_tissue",),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.op = CTWindow(windows)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d


class ClipZScored(MapTransform):
    """Dictionary version of :class:`ClipZScore`.

    Left at null, ``lower``, ``upper``, ``mean`` and ``std`` are filled from the foreground
    statistics of the training cases (``intensity_stats.json`` in the run folder), clipped at
    ``percentiles``.

    Args:
        keys: the keys normalised (``image``).
        percentiles: the clip percentiles used when the bounds are gathered.
        lower: lower clip bound, or None to gather it.
        upper: upper clip bound, or None to gather it.
        mean: foreground mean, or None to gather it.
        std: foreground standard deviation, or None to gather it.
        channels: the channels normalised (gathered over); default all.
        allow_missing_keys: skip absent keys instead of failing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        percentiles: Sequence[float] = (0.5, 99.5),
        lower: float | None = None,
        upper: float | None = None,
        mean: float | None = None,
        std: float | None = None,
        channels: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        lo, hi = (float(p) for p in percentiles)
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles {list(percentiles)}: need 0 <= low < high <= 100")
        self.percentiles = (lo, hi)
        self.values = (lower, upper, mean, std)
        self.channels = None if channels is None else list(channels)
        ready = None not in self.values
        self.op = ClipZScore(*self.values, channels=self.channels) if ready else None  # type: ignore[arg-type]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        if self.op is None:
            raise RuntimeError("ClipZScored: statistics not set; the pipeline fills them at ingest")
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d
