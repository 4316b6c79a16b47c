"""Augmentation on the device: one batched random affine warp, no PIL, no DataLoader.

Input is a batch sliced from the uint8 image cache, already on the GPU (or the
CPU): ``(B, 3, S, S)``. Every geometric preset draws one affine matrix per
sample and applies the whole batch with a single ``affine_grid`` +
``grid_sample``, then normalises with ImageNet mean/std: a handful of kernels
whatever the batch size. Evaluation only resizes and normalises.

Conventions (as Keras' ImageDataGenerator, which the seeds used):
- a matrix maps output coordinates to input coordinates in [-1, 1]
  (``affine_grid``'s convention), composed rotation @ shift @ shear @ zoom @ flip;
- a zoom factor z shows a region z times the image side: z < 1 magnifies;
  the two axes draw their factors independently, as Keras does;
- a positive angle turns the content counter-clockwise on screen.
Outside the image, pixels are reflected (``PADDING_MODE``): Keras fills with the
nearest edge pixel, which smears streaks; zeros would paint black corners. Both
are textures no painting has, which a classifier of brushwork could latch onto.

The cache is stored at the network's input size, so bilinear sampling needs no
anti-aliasing; a cache much larger than ``out_size`` would alias while training.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.config import PRESETS
from core.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PADDING_MODE = "reflection"  # grid_sample's fill outside the image; see the module docstring


@dataclass(frozen=True)
class AffineRanges:
    """How far each random transform of a preset may go; every draw is uniform in its range."""

    rotation: float = 0.0  # max |angle| in degrees
    shear: float = 0.0  # max |shear angle| in radians (Keras <= 2.1 semantics: see PRESET_RANGES["keras"])
    zoom: tuple[float, float] = (1.0, 1.0)  # Keras zoom factor range: z < 1 magnifies, z > 1 shows more
    zoom_per_axis: bool = True  # draw x and y zoom independently (Keras); False: one factor for both
    shift: float = 0.0  # max translation, as a fraction of the image side
    crop_scale: tuple[float, float] | None = None  # random resized crop area fraction; replaces zoom and shift
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio w/h, drawn log-uniformly
    hflip: float = 0.0  # probability of a horizontal (left-right) flip
    vflip: float = 0.0  # probability of a vertical (top-bottom) flip

    def __post_init__(self) -> None:
        if self.rotation < 0 or self.shear < 0 or self.shift < 0:
            raise ConfigError("rotation, shear and shift ranges must be >= 0")
        if not 0 < self.zoom[0] <= self.zoom[1]:
            raise ConfigError(f"zoom range must satisfy 0 < low <= high, got {self.zoom}")
        if self.crop_scale is not None and not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ConfigError(f"crop ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        if not (0 <= self.hflip <= 1 and 0 <= self.vflip <= 1):
            raise ConfigError("flip probabilities must be in [0, 1]")


PRESET_RANGES = {
    "none": AffineRanges(),
    # torchvision's RandomResizedCrop + RandomHorizontalFlip (the Rijksmuseum study), but crops of 50-100 % of
    # the area instead of 8-100 %: the cache is already at network size, so an 8 % crop would be a blurry
    # 3.5x upsampling that erases the brushwork the classifier needs. Crops are clamped to the image rather
    # than rejection-sampled.
    "crop-flip": AffineRanges(crop_scale=(0.5, 1.0), hflip=0.5),
    # seed 001: ImageDataGenerator(rotation_range=30, zoom_range=0.5, horizontal_flip=True, vertical_flip=True)
    "rotate-zoom-flip": AffineRanges(rotation=30.0, zoom=(0.5, 1.5), hflip=0.5, vflip=0.5),
    # seed 003: ImageDataGenerator(shear_range=0.5, rotation_range=30, zoom_range=0.2, width_shift_range=0.2,
    # height_shift_range=0.2, horizontal_flip=True). shear_range was radians up to Keras 2.1 and degrees
    # since keras-preprocessing 1.0.2; we take radians (about 28.6 degrees): the seed's author meant a visible
    # shear, and 0.5 degrees would be no augmentation at all.
    "keras": AffineRanges(rotation=30.0, shear=0.5, zoom=(0.8, 1.2), shift=0.2, hflip=0.5),
}


@functools.lru_cache(maxsize=16)
def _normalise_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with x_uint8 * scale + shift == (x / 255 - mean) / std; cached per device."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    scale, shift = 1 / (255 * std), -mean / std
    return scale.view(1, 3, 1, 1).to(device), shift.view(1, 3, 1, 1).to(device)


def to_float_normalised(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in 0..255) (B, 3, H, W) -> float32 normalised with ImageNet mean/std.

    One fused multiply-add; it keeps the input's memory format, so channels_last stays channels_last.
    """
    scale, shift = _normalise_constants(x.device)
    return torch.addcmul(shift, x.float(), scale)  # (B, 3, H, W)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, anti-aliased when shrinking, to (B, 3, size, size) float32 in 0..255; a no-op cast at size."""
    x = x.float()
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def sample_params(ranges: AffineRanges, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Per-sample transform parameters, each (n,): angle and shear (radians), zoom_x/zoom_y, shift_x/shift_y
    (in [-1, 1] units), flip_x/flip_y (+-1). One draw of (n, 10) uniforms from ``generator`` (on its device;
    the global CPU stream when None), so the same seed gives the same batch on every device.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, 10, generator=generator, device=device)  # (n, 10) in [0, 1)

    def between(col: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * u[:, col]

    angle = between(0, -ranges.rotation, ranges.rotation) * (math.pi / 180)
    shear = between(1, -ranges.shear, ranges.shear)
    if ranges.crop_scale is not None:
        area = between(6, *ranges.crop_scale)
        ratio = torch.exp(between(7, math.log(ranges.crop_ratio[0]), math.log(ranges.crop_ratio[1])))
        zx, zy = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
        tx, ty = between(4, -1, 1) * (1 - zx), between(5, -1, 1) * (1 - zy)  # the crop stays inside the image
    else:
        zx = between(2, *ranges.zoom)
        zy = between(3, *ranges.zoom) if ranges.zoom_per_axis else zx
        tx, ty = between(4, -2 * ranges.shift, 2 * ranges.shift), between(5, -2 * ranges.shift, 2 * ranges.shift)
    flip_x = torch.where(u[:, 8] < ranges.hflip, -1.0, 1.0)
    flip_y = torch.where(u[:, 9] < ranges.vflip, -1.0, 1.0)
    return {
        "angle": angle,
        "shear": shear,
        "zoom_x": zx,
        "zoom_y": zy,
        "shift_x": tx,
        "shift_y": ty,
        "flip_x": flip_x,
        "flip_y": flip_y,
    }


def affine_matrices(
    angle: torch.Tensor,
    shear: torch.Tensor,
    zoom_x: torch.Tensor,
    zoom_y: torch.Tensor,
    shift_x: torch.Tensor,
    shift_y: torch.Tensor,
    flip_x: torch.Tensor,
    flip_y: torch.Tensor,
) -> torch.Tensor:
    """(n, 2, 3) matrices, output -> input coordinates: rotation @ shift @ shear @ zoom @ flip (Keras' order)."""
    n = angle.shape[0]
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)

    def mat(*rows: torch.Tensor) -> torch.Tensor:
        return torch.stack(rows, dim=1).view(n, 3, 3)

    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = mat(cos, -sin, zero, sin, cos, zero, zero, zero, one)
    shift = mat(one, zero, shift_x, zero, one, shift_y, zero, zero, one)
    shearing = mat(one, -torch.sin(shear), zero, zero, torch.cos(shear), zero, zero, zero, one)
    zoom = mat(zoom_x * flip_x, zero, zero, zero, zoom_y * flip_y, zero, zero, zero, one)  # flips: sign of zoom
    return (rotation @ shift @ shearing @ zoom)[:, :2, :]  # (n, 2, 3)


def warp(x: torch.Tensor, theta: torch.Tensor, out_size: int) -> torch.Tensor:
    """Sample (B, 3, S, S) images through (B, 2, 3) matrices into float32 (B, 3, out_size, out_size), 0..255."""
    n = x.shape[0]
    grid = F.affine_grid(
        theta.to(x.device, torch.float32), [n, x.shape[1], out_size, out_size], align_corners=False
    )  # (B, out, out, 2)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode=PADDING_MODE, align_corners=False)


class Augmenter:
    """``augment(x_uint8 (B, 3, S, S), generator=None) -> float32 (B, 3, out_size, out_size)``, normalised.

    Training with a geometric preset draws one random affine per sample; evaluation (``train=False``) and the
    ``none`` preset only resize and normalise. ``ranges`` overrides the preset's ranges (e.g. to force flips).
    """

    def __init__(self, preset: str, out_size: int, train: bool, ranges: AffineRanges | None = None) -> None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown augmentation preset {preset!r}; choose from {', '.join(PRESETS)}")
        if not isinstance(out_size, int) or out_size < 1:
            raise ConfigError(f"augmentation output size must be a positive integer, got {out_size!r}")
        self.preset, self.out_size, self.train = preset, out_size, train
        self.ranges = ranges if ranges is not None else PRESET_RANGES[preset]
        self.geometric = train and self.ranges != AffineRanges()

    def __repr__(self) -> str:
        return f"Augmenter({self.preset!r}, out_size={self.out_size}, train={self.train})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
        if not self.geometric:
            return to_float_normalised(resize(x, self.out_size))  # (B, 3, out, out)
        if x.shape[-1] != x.shape[-2]:
            # the matrices act on [-1, 1] coordinates, so a rotation of a non-square image would shear it
            raise ValueError(f"geometric augmentation needs square images, got {tuple(x.shape[-2:])}")
        theta = affine_matrices(**sample_params(self.ranges, x.shape[0], generator))  # (B, 2, 3)
        return to_float_normalised(warp(x, theta, self.out_size))  # (B, 3, out, out)


def make_augment(preset: str, out_size: int, train: bool) -> Augmenter:
    """The augmentation for ``preset``: random warps when training, resize + normalise for evaluation."""
    return Augmenter(preset, out_size, train)
