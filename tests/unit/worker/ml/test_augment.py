"""GPU-style batched augmentation, checked on the CPU with known patterns."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from core.config import PRESETS
from core.errors import ConfigError
from worker.ml.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESET_RANGES,
    AffineRanges,
    Augmenter,
    affine_matrices,
    make_augment,
    sample_params,
    to_float_normalised,
    warp,
)

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def images(n=4, size=16):
    x = torch.zeros(n, 3, size, size, dtype=torch.uint8)
    x[:, :, :, : size // 2] = 255  # left half white: flips and rotations move it
    return x


def unnormalise(y):
    return y * STD * 255 + MEAN * 255  # back to 0..255


def stripe(size=64, width=3):
    """A horizontal bright line through the centre."""
    x = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    x[:, :, size // 2 - width // 2 : size // 2 - width // 2 + width, :] = 255
    return x


def orientation_degrees(img, radius):
    """On-screen angle (counter-clockwise, degrees, in (-90, 90]) of the bright line in (H, W), from the
    second moments of the pixels within ``radius`` of the centre."""
    h, w = img.shape
    ys, xs = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    wgt = img.clamp(min=0) * ((xs**2 + ys**2) < radius**2)
    wgt = wgt / wgt.sum()
    mx, my = (wgt * xs).sum(), (wgt * ys).sum()
    cxx, cyy, cxy = (wgt * (xs - mx) ** 2).sum(), (wgt * (ys - my) ** 2).sum(), (wgt * (xs - mx) * (ys - my)).sum()
    return math.degrees(-0.5 * math.atan2(2 * cxy, cxx - cyy))  # y points down on screen: negate


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("train", [True, False])
def test_shapes_dtypes_and_determinism(preset, train):
    aug = make_augment(preset, 12, train=train)
    a = aug(images(), torch.Generator().manual_seed(1))
    b = aug(images(), torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 12, 12) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert aug(images(size=8), torch.Generator().manual_seed(1)).shape == (4, 3, 12, 12)  # upsampling too
    if train and preset != "none":
        assert not torch.equal(a, aug(images(), torch.Generator().manual_seed(2)))


def test_channels_last_input():
    x = images().contiguous(memory_format=torch.channels_last)
    for preset in PRESETS:
        out = make_augment(preset, 16, train=True)(x, torch.Generator().manual_seed(0))
        ref = make_augment(preset, 16, train=True)(images(), torch.Generator().manual_seed(0))
        assert torch.allclose(out, ref, atol=1e-5)
    assert to_float_normalised(x).is_contiguous(memory_format=torch.channels_last)


def test_eval_and_none_are_plain_resize_and_normalise():
    x = torch.randint(0, 256, (2, 3, 20, 20), dtype=torch.uint8)
    expected = (F.interpolate(x.float() / 255, size=(12, 12), mode="bilinear", antialias=True) - MEAN) / STD
    for aug in (
        make_augment("none", 12, train=False),
        make_augment("none", 12, train=True),
        make_augment("keras", 12, train=False),
    ):
        assert torch.allclose(aug(x, None), expected, atol=1e-4)
    same_size = make_augment("rotate-zoom-flip", 20, train=False)(x, None)
    assert torch.allclose(same_size, (x / 255 - MEAN) / STD, atol=1e-5)


def test_forced_flips_are_exact_mirror_images():
    x = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    no_motion = dict(rotation=0.0, shear=0.0, zoom=(1.0, 1.0), shift=0.0)
    base = PRESET_RANGES["rotate-zoom-flip"]
    h = Augmenter("rotate-zoom-flip", 16, True, replace(base, **no_motion, hflip=1, vflip=0))
    v = Augmenter("rotate-zoom-flip", 16, True, replace(base, **no_motion, hflip=0, vflip=1))
    assert torch.allclose(unnormalise(h(x)), x.flip(-1).float(), atol=1e-3)
    assert torch.allclose(unnormalise(v(x)), x.flip(-2).float(), atol=1e-3)
    crop = Augmenter("crop-flip", 16, True, AffineRanges(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=1))
    assert torch.allclose(unnormalise(crop(x)), x.flip(-1).float(), atol=1e-3)


def test_default_flip_presets_flip_about_half():
    x = images(n=64)
    for preset in ("crop-flip", "rotate-zoom-flip", "keras"):
        out = make_augment(preset, 16, train=True)(x, torch.Generator().manual_seed(0))
        right_brighter = out[:, 0, :, 10:].mean((1, 2)) > out[:, 0, :, :6].mean((1, 2))
        assert 12 < int(right_brighter.sum()) < 52, preset


def test_positive_angle_turns_counter_clockwise():
    x = images(n=1, size=8)
    one, zero = torch.ones(1), torch.zeros(1)
    theta = affine_matrices(torch.tensor([math.pi / 2]), zero, one, one, zero, zero, one, one)
    assert torch.allclose(warp(x, theta, 8), torch.rot90(x, 1, dims=(2, 3)).float(), atol=1e-3)


def test_rotation_preset_rotates_by_the_drawn_angles():
    n, size = 12, 64
    x = stripe(size).expand(n, -1, -1, -1)
    ranges = replace(PRESET_RANGES["rotate-zoom-flip"], zoom=(1.0, 1.0))  # pure rotation and flips
    out = unnormalise(Augmenter("rotate-zoom-flip", size, True, ranges)(x, torch.Generator().manual_seed(3)))
    p = sample_params(ranges, n, torch.Generator().manual_seed(3))  # the same draws
    expected = torch.rad2deg(p["angle"] * p["flip_x"] * p["flip_y"])  # a single flip mirrors the angle
    measured = torch.tensor([orientation_degrees(out[i, 0], size / 2 - 2) for i in range(n)])
    assert torch.allclose(measured, expected, atol=1.5), (measured, expected)
    assert expected.abs().max() > 10 and expected.abs().max() <= 30


def test_full_presets_rotate_and_zoom_within_their_ranges():
    n, size = 16, 64
    x = stripe(size).expand(n, -1, -1, -1)
    for preset in ("rotate-zoom-flip", "keras"):
        ranges = replace(PRESET_RANGES[preset], shift=0.0)  # keep the line at the centre, where it is measured
        out = unnormalise(Augmenter(preset, size, True, ranges)(x, torch.Generator().manual_seed(5)))
        measured = torch.tensor([orientation_degrees(out[i, 0], size / 5) for i in range(n)])
        # rotation up to 30 degrees, steepened or flattened by per-axis zoom (and shear for keras)
        assert measured.abs().max() > 10, preset
        assert measured.abs().max() < 70, preset
    zooms = sample_params(PRESET_RANGES["rotate-zoom-flip"], 1000, torch.Generator().manual_seed(0))["zoom_x"]
    assert 0.5 <= zooms.min() < 0.55 and 1.45 < zooms.max() <= 1.5
    keras = sample_params(PRESET_RANGES["keras"], 1000, torch.Generator().manual_seed(0))
    assert 0.35 < keras["shift_x"].abs().max() <= 0.4  # 20 % of the side = 0.4 in [-1, 1] units
    assert 0.45 < keras["shear"].abs().max() <= 0.5 and 0.8 <= keras["zoom_y"].min() < 0.82


def test_crops_stay_inside_the_image():
    p = sample_params(PRESET_RANGES["crop-flip"], 1000, torch.Generator().manual_seed(0))
    assert ((p["zoom_x"] * p["zoom_y"]) >= 0.5 - 1e-6).all()  # area >= 50 %, clamping included
    for axis in ("x", "y"):  # |centre| + half-width <= 1 in [-1, 1] units
        assert ((p[f"shift_{axis}"].abs() + p[f"zoom_{axis}"]) <= 1 + 1e-6).all()


def test_unknown_preset_and_bad_ranges():
    with pytest.raises(ConfigError, match="unknown augmentation preset 'mixup'"):
        make_augment("mixup", 16, train=True)
    with pytest.raises(ConfigError, match="zoom range"):
        AffineRanges(zoom=(1.5, 0.5))
    with pytest.raises(ConfigError, match="positive integer"):
        make_augment("none", 0, train=False)
