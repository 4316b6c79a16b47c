"""Augmentation on the device, one batched affine warp per preset.

Input is a slice of the uint8 cache already on the GPU (B, 3, S, S); every
geometric preset draws one random affine matrix per sample and applies all of
them with a single ``affine_grid`` + ``grid_sample``, so augmentation is two
kernels regardless of batch size and never touches PIL or a DataLoader.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from worker.ml.errors import ConfigError

PRESETS = ("none", "crop-flip", "rotate-zoom-flip", "keras")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def to_float_normalised(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 normalised with ImageNet statistics."""
    x = x.float().div_(255)
    return (x - MEAN.to(x.device)) / STD.to(x.device)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def _flip(n: int, g: torch.Generator | None) -> torch.Tensor:
    return torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)


def random_affine(preset: str, n: int, g: torch.Generator | None) -> torch.Tensor:
    """(n, 2, 3) matrices mapping output to input coordinates in [-1, 1] (affine_grid's convention)."""
    one, zero = torch.ones(n), torch.zeros(n)
    angle, shear = zero, zero
    sx = sy = one
    tx, ty = zero, zero
    fx, fy = one, one
    if preset == "crop-flip":
        # Random resized crop: area 35-100 % of the image, aspect 3/4-4/3, anywhere inside it.
        area = _uniform(n, 0.35, 1.0, g)
        logr = _uniform(n, math.log(3 / 4), math.log(4 / 3), g)
        sx = torch.sqrt(area * logr.exp()).clamp(max=1.0)
        sy = torch.sqrt(area / logr.exp()).clamp(max=1.0)
        tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - sx)
        ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - sy)
        fx = _flip(n, g)
    elif preset == "rotate-zoom-flip":
        angle = _uniform(n, -30, 30, g) * math.pi / 180
        zoom = _uniform(n, 0.5, 1.5, g)  # > 1 zooms in (samples a smaller region)
        sx = sy = 1 / zoom
        fx, fy = _flip(n, g), _flip(n, g)
    elif preset == "keras":
        # Keras ImageDataGenerator(rotation_range=30, shear_range=0.5 (radians, as in Keras 2.0's docs),
        # width/height_shift_range=0.2, zoom_range=0.2 i.e. [0.8, 1.2] per axis, horizontal_flip=True).
        angle = _uniform(n, -30, 30, g) * math.pi / 180
        shear = _uniform(n, -0.5, 0.5, g)
        sx, sy = _uniform(n, 0.8, 1.2, g), _uniform(n, 0.8, 1.2, g)
        tx, ty = _uniform(n, -0.4, 0.4, g), _uniform(n, -0.4, 0.4, g)  # 0.2 of the width = 0.4 in [-1, 1]
        fx = _flip(n, g)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # M = R(angle) @ Shear @ diag(sx * fx, sy * fy), then translation
    a = cos * sx * fx
    b = (cos * torch.tan(shear) - sin) * sy * fy
    c = sin * sx * fx
    d = (sin * torch.tan(shear) + cos) * sy * fy
    return torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)  # (n, 2, 3)


def make_augment(preset: str, out_size: int, train: bool) -> Augment:
    if preset not in PRESETS:
        raise ConfigError(f"unknown augmentation preset {preset!r}; choose from {', '.join(PRESETS)}")

    def plain(x: torch.Tensor, _g: torch.Generator | None = None) -> torch.Tensor:
        return to_float_normalised(_resize(x.float(), out_size).round_().clamp_(0, 255))

    if not train or preset == "none":
        return plain

    def warp(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        n = x.shape[0]
        theta = random_affine(preset, n, g).to(x.device)  # drawn on the CPU: same stream on every device
        grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return to_float_normalised(out)

    return warp
