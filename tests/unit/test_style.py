"""Style transfer maths against hand-computed values, and batch independence."""

import pytest
import torch
import torchvision.models as tvm

from worker.ml.errors import ConfigError
from worker.ml.style import (StyleConfig, build_vgg, content_loss, gram_matrix, layer_indices, style_loss,
                             stylize_batch, tv_loss)


def test_gram_matrix_by_hand_and_per_sample():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    # channel vectors a = (1,2,3,4), b = (0,1,0,1): a.a = 30, a.b = 6, b.b = 2; normalised by C*H*W = 8
    assert torch.allclose(gram_matrix(f), torch.tensor([[[30.0, 6.0], [6.0, 2.0]]]) / 8)
    other = torch.randn(1, 2, 2, 2)
    both = gram_matrix(torch.cat([f, other]))
    assert torch.allclose(both[0], gram_matrix(f)[0]) and torch.allclose(both[1], gram_matrix(other)[0])
    assert gram_matrix(f.half()).dtype == torch.float32


def test_losses_by_hand():
    a = torch.zeros(2, 1, 2, 2)
    b = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[2.0, 0.0], [0.0, 0.0]]]])
    assert torch.allclose(content_loss(a, b), torch.tensor([1.0, 1.0]))  # means of 1,1,1,1 and 4,0,0,0
    img = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # horizontal steps of 1, vertical of 0
    assert torch.allclose(tv_loss(img), torch.tensor([1.0]))
    feats = {n: torch.ones(1, 1, 1, 2) for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")}
    grams = {n: torch.zeros(1, 1, 1) for n in feats}
    # Gram of (1, 1) normalised by 2 = 1 per layer; squared error 1, five layers
    assert torch.allclose(style_loss(feats, grams), torch.tensor([5.0]))


@pytest.mark.parametrize("vgg,expected", [("vgg19", {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20,
                                                     "relu4_2": 22, "relu5_1": 29}),
                                          ("vgg16", {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 18,
                                                     "relu4_2": 20, "relu5_1": 25})])
def test_layer_names_match_torchvision(vgg, expected):
    index = layer_indices(vgg)
    features = getattr(tvm, vgg)(weights=None).features
    for name, i in expected.items():
        assert index[name] == i and isinstance(features[i], torch.nn.ReLU)
        assert isinstance(features[i - 1], torch.nn.Conv2d)


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return build_vgg("vgg19")[0]


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_pair_is_the_same_alone_and_in_a_batch(vgg, optimizer):
    g = torch.Generator().manual_seed(1)
    content, style = torch.rand(3, 3, 24, 24, generator=g), torch.rand(3, 3, 24, 24, generator=g)
    cfg = StyleConfig(optimizer=optimizer, steps=5, size=24, style_weight=1e3, init="noise")
    alone = stylize_batch(content[1:2], style[1:2], cfg, vgg, pair_seeds=[7])
    batch = stylize_batch(content, style, cfg, vgg, pair_seeds=[3, 7, 9])
    assert torch.allclose(alone.images[0], batch.images[1], atol=1e-4)
    assert torch.allclose(alone.total_loss[0], batch.total_loss[1], rtol=1e-4)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_losses_go_down(vgg, optimizer):
    g = torch.Generator().manual_seed(2)
    content, style = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    start = stylize_batch(content, style, StyleConfig(optimizer=optimizer, steps=1, style_weight=1e3), vgg)
    later = stylize_batch(content, style, StyleConfig(optimizer=optimizer, steps=12, style_weight=1e3), vgg)
    assert (later.total_loss < start.total_loss).all()
    assert later.images.min() >= 0 and later.images.max() <= 1


@pytest.mark.parametrize("kw,match", [({"optimizer": "sgd"}, "optimizer"), ({"steps": 0}, "steps"),
                                      ({"style_weight": -1}, "non-negative"), ({"vgg": "vgg11"}, "vgg")])
def test_bad_configs(kw, match):
    with pytest.raises(ConfigError, match=match):
        StyleConfig(**kw)


def test_imagenet_without_cache_names_the_path(tmp_path):
    torch.hub.set_dir(str(tmp_path))
    with pytest.raises(ConfigError, match=r"put vgg19-.*\.pth in"):
        build_vgg("vgg19", "imagenet")
