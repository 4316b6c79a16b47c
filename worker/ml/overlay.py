"""A heat map laid over the picture it was computed on, as a small image for a report.

The colours are the classic "jet" ramp (blue cold, red hot) of Grad-CAM figures, computed here in a few
lines of numpy rather than through matplotlib, so the same map always gives the same bytes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from corpus.thumbs import THUMB_PX

OVERLAY_PX = THUMB_PX  # long side: a report's thumbnail size
ALPHA = 0.45  # weight of the heat map: the picture stays readable underneath


def jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> RGB in [0, 1] (shape + (3,)), piecewise linear like matplotlib's jet."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # where red, green and blue peak
    return np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)


def overlay(picture: np.ndarray, heat: np.ndarray, side: int = OVERLAY_PX, alpha: float = ALPHA) -> Image.Image:
    """uint8 (H, W, 3) picture and (h, w) map in [0, 1] -> RGB image, long side ``side``, the map (upsampled
    bilinearly to the picture's frame) blended over the picture (upsampled bicubically)."""
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"picture must be (H, W, 3), got shape {picture.shape}")
    if heat.ndim != 2:
        raise ValueError(f"heat map must be (h, w), got shape {heat.shape}")
    h, w = picture.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    base = np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
    grey = Image.fromarray(np.round(np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8), "L")
    level = np.asarray(grey.resize(size, Image.Resampling.BILINEAR), dtype=np.float64) / 255
    mixed = (1 - alpha) * base + alpha * 255 * jet(level)
    return Image.fromarray(np.round(mixed).clip(0, 255).astype(np.uint8), "RGB")
