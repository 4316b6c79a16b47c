import pytest
import torch

from worker.ml.augment import PRESETS, make_augment, to_float_normalised
from worker.ml.errors import ConfigError


def images(n=4, size=16):
    x = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    x[:, :, :, : size // 2] = 255  # left half white: flips and rotations move it
    return x


@pytest.mark.parametrize("preset", PRESETS)
def test_shapes_and_determinism(preset):
    aug = make_augment(preset, 12, train=True)
    a = aug(images(), torch.Generator().manual_seed(1))
    b = aug(images(), torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 12, 12) and a.dtype == torch.float32
    assert torch.equal(a, b)


def test_eval_is_plain_resize_and_normalise():
    x = images(size=12)
    assert torch.allclose(make_augment("keras", 12, train=False)(x, None), to_float_normalised(x))


def test_geometric_presets_change_the_images():
    x = images(n=16)
    plain = make_augment("none", 16, train=False)(x, None)
    for preset in ("crop-flip", "rotate-zoom-flip", "keras"):
        out = make_augment(preset, 16, train=True)(x, torch.Generator().manual_seed(0))
        diff = (out - plain).abs().flatten(1).mean(1)
        assert (diff > 0.1).sum() >= 8, preset  # most samples moved
    # horizontal flips appear: some samples have their bright half on the right
    out = make_augment("crop-flip", 16, train=True)(x, torch.Generator().manual_seed(0))
    right_brighter = out[:, 0, :, 12:].mean((1, 2)) > out[:, 0, :, :4].mean((1, 2))
    assert 0 < right_brighter.sum() < 16


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown augmentation preset"):
        make_augment("mixup", 16, train=True)
