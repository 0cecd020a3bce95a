"""Overlays of a multi-channel case draw the chosen channel (evaluate.overlay_channel)."""

from __future__ import annotations

import numpy as np

from medseg.report.overlays import overlay_figure


def _shown(fig) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(fig.axes[0].images[0].get_array())


def test_a_two_channel_picture_draws_the_chosen_channel() -> None:
    image = np.stack([np.zeros((8, 10)), np.linspace(0, 1, 80).reshape(8, 10)]).astype(np.float32)
    ref = np.zeros((8, 10), np.uint8)
    ref[2:5, 2:6] = 1
    first = overlay_figure(image, ref, ref, {1: "lesion"}, "c", channel=0)
    second = overlay_figure(image, ref, ref, {1: "lesion"}, "c", channel=1)
    assert np.array_equal(_shown(first), image[0]) and np.array_equal(_shown(second), image[1])
    rgb = overlay_figure(np.repeat(image[1:], 3, 0), ref, ref, {1: "lesion"}, "c", channel=1)
    assert _shown(rgb).shape == (8, 10, 3)  # three channels: a colour picture


def test_a_two_channel_volume_draws_the_chosen_channel_in_every_plane() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
    image[1] += 100.0
    ref = np.zeros((6, 7, 5), np.uint8)
    ref[2:4, 2:5, 1:4] = 1
    fig = overlay_figure(image, ref, ref, {1: "core"}, "c", [1.0, 1.0, 2.0], channel=1)
    assert _shown(fig).min() > 90  # the second channel's values, not the first's
