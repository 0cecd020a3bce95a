"""The random part of the training chain runs on plain tensors, from a copy of the cached sample,
with MONAI's meta-data tracking off only while it runs."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor, get_track_meta
from monai.transforms import Compose

from medseg.chains import train_transforms
from medseg.data.datalist import build_datalist
from medseg.registry import build_chain
from medseg.transforms.untracked import Untracked

from ..conftest import tiny_config

AUGMENT = [
    {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
    {"RandAffined": {"prob": 1.0, "rotate_range": 0.5, "scale_range": 0.15, "padding_mode": "zeros"}},
    {"RandScaleIntensityd": {"prob": 1.0, "factors": 0.15}},
]


def test_the_random_part_gets_plain_copies_and_leaves_the_cache_and_tracking_alone(synthetic_root, tmp_path):
    cfg = tiny_config(synthetic_root, tmp_path, transforms={"train": AUGMENT})
    chain = train_transforms(cfg.data, cfg.transforms)
    assert isinstance(chain.transforms[-1], Untracked)
    assert not any(isinstance(t, Untracked) for t in chain.transforms[:-1])
    cases, _ = build_datalist(cfg.data, 2, 3)
    first_random = chain.get_index_of_first(lambda t: isinstance(t, Untracked))
    cached = chain(cases[0].item(), end=first_random)
    assert isinstance(cached["image"], MetaTensor)  # the cached part keeps its meta data
    before = {k: cached[k].clone() for k in ("image", "label")}
    chain.set_random_state(seed=3)
    draws = [chain(cached, start=first_random) for _ in range(3)]
    assert get_track_meta()  # switched back on after each call
    for k in ("image", "label"):
        assert torch.equal(cached[k].as_tensor(), before[k].as_tensor())  # the cache is never changed
        assert all(type(d[k]) is torch.Tensor for d in draws)
    assert draws[0]["label"].dtype == torch.int64 and draws[0]["image"].shape == (3, 32, 32)
    assert not torch.equal(draws[0]["image"], draws[1]["image"])  # a new draw each call
    # the label moved with the image: the lesion is darker than the skin around it, in every draw
    for d in draws:
        lesion = d["label"][0] > 0
        assert lesion.any() and (~lesion).any()
        assert d["image"].mean(0)[lesion].mean() < d["image"].mean(0)[~lesion].mean()


def test_the_same_seed_gives_the_same_draws(synthetic_root, tmp_path):
    cfg = tiny_config(synthetic_root, tmp_path, transforms={"train": AUGMENT})
    cases, _ = build_datalist(cfg.data, 2, 3)
    runs = []
    for _ in range(2):
        chain = train_transforms(cfg.data, cfg.transforms)
        chain.set_random_state(seed=11)
        runs.append([chain(cases[0].item()) for _ in range(2)])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_tracking_comes_back_on_when_a_step_fails():
    def fails(data):
        raise ValueError("bad step")

    steps = Untracked([*build_chain([{"RandFlipd": {"prob": 1.0, "spatial_axis": 0}}], "train"), fails])
    with pytest.raises(RuntimeError) as err:  # MONAI names the step that failed
        Compose([steps])({"image": torch.zeros(1, 4, 4), "label": torch.zeros(1, 4, 4)})
    assert "bad step" in str(err.value.__cause__.__cause__)
    assert get_track_meta()
