"""Images in and out of the transfer: PIL <-> (3, H, W) floats in [0, 1], and the resize to a long side."""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from core.config import MIN_SIDE


def resize_long_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the long side is ``size`` px, aspect kept (Lanczos).

    The short side is never below 16 px, the least relu5_1 needs: only tiny sizes of
    elongated pictures (24 px long, 15 px short) are stretched a little by it.
    """
    scale = size / max(img.size)
    w, h = (max(MIN_SIDE, round(side * scale)) for side in img.size)
    return img.resize((w, h), Image.Resampling.LANCZOS)


def from_pil(img: Image.Image) -> torch.Tensor:
    """PIL image -> float (3, H, W) in [0, 1]."""
    return TF.pil_to_tensor(img.convert("RGB")).float() / 255


def to_pil(t: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> 8-bit RGB PIL image (save with ``.save(path)``; PNG keeps it lossless)."""
    return TF.to_pil_image((t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu())
