"""Frozen-backbone features: a plain view and augmented views per image, the same whatever the batching."""

from __future__ import annotations

import torch
import torch.nn as nn

from worker.ml.augment import make_augment
from worker.ml.features import extract, plain_view, random_view


def images(n: int = 5, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_view_zero_is_the_plain_image_and_the_others_are_augmented():
    x = images()
    done = []
    # An identity backbone: the features are the network's inputs, so each view can be checked exactly.
    feats = extract(
        nn.Identity(),
        x,
        16,
        "crop-flip",
        views=3,
        device=torch.device("cpu"),
        batch_size=2,
        seed=1,
        progress=done.append,
    )
    assert feats.shape == (5, 3, 3, 16, 16) and feats.dtype == torch.bfloat16
    assert done == [2, 4, 5]
    # Exact, although extracted 2 images at a time: at its own size the plain transform is a cast and one
    # multiply-add per pixel, elementwise, so no kernel choice by batch size can change a bit.
    assert torch.equal(feats[:, 0], make_augment("none", 16, train=False)(x).bfloat16())
    for v in (1, 2):
        assert not torch.equal(feats[:, v], feats[:, 0])
    assert not torch.equal(feats[:, 1], feats[:, 2])  # each view draws its own warps


def test_the_views_follow_the_seed():
    x, cpu = images(), torch.device("cpu")
    a = extract(nn.Identity(), x, 16, "crop-flip", views=2, device=cpu, seed=3)
    assert torch.equal(a, extract(nn.Identity(), x, 16, "crop-flip", views=2, device=cpu, seed=3))
    assert not torch.equal(a[:, 1], extract(nn.Identity(), x, 16, "crop-flip", views=2, device=cpu, seed=4)[:, 1])


def test_a_backbone_gives_its_maps_per_view():
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())
    feats = extract(backbone, images(3), 16, "none", views=2, device=torch.device("cpu"))
    assert feats.shape == (3, 2, 4, 8, 8)
    assert torch.equal(feats[:, 0], feats[:, 1])  # "none" augments nothing: both views are the plain image


def test_random_view_picks_one_stored_view_per_sample_and_plain_view_the_first():
    n, views = 64, 4
    x = torch.arange(views, dtype=torch.bfloat16).view(1, views, 1, 1, 1).expand(n, views, 2, 3, 3).contiguous()
    picked = random_view(x, torch.Generator().manual_seed(0))
    assert picked.shape == (n, 2, 3, 3) and picked.dtype == torch.float32
    chosen = picked[:, 0, 0, 0]
    assert torch.equal(picked, chosen.view(n, 1, 1, 1).expand(n, 2, 3, 3))  # one whole view per sample
    assert set(chosen.tolist()) == set(range(views))  # every view gets drawn
    assert torch.equal(picked, random_view(x, torch.Generator().manual_seed(0)))
    assert torch.equal(plain_view(x), torch.zeros(n, 2, 3, 3))
