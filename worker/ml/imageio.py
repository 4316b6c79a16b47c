"""Robust image loading: every mode a museum scan comes in, EXIF rotation, bombs refused.

Decoding happens once per (dataset, size) into the uint8 cache, so this is the
only code that ever sees a file's bytes.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 89_478_485  # PIL's own default limit: ~0.25 GB of RGB


class ImageError(Exception):
    """A file that cannot be used as an image; the message is the reason."""


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    sha256: str


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale the real range to 8 bits instead of clipping at 255.
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, F


def open_rgb(path: Path | str, max_pixels: int = MAX_PIXELS, draft: int | None = None) -> Image.Image:
    """The image as RGB, EXIF orientation applied. Raises ImageError with a reason.

    ``draft``: a JPEG may be decoded at a reduced scale that keeps both sides at
    least this many pixels (libjpeg's DCT scaling: much faster for thumbnails).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
        with Image.open(path) as im:
            pixels = im.width * im.height
            if pixels > max_pixels:
                raise ImageError(f"decompression bomb: {pixels} pixels > limit {max_pixels}")
            if draft and im.format == "JPEG":
                im.draft("RGB", (draft, draft))
            with warnings.catch_warnings():
                # Our own limit above decides; PIL's warning would be an error under pytest.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
                im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image PIL can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageError(f"unreadable image: {err}") from None


def probe(path: Path | str, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Decode once to verify the file; size after EXIF rotation, sha256 of the bytes."""
    data = Path(path).read_bytes()
    im = open_rgb(path, max_pixels)
    return ImageInfo(im.width, im.height, hashlib.sha256(data).hexdigest())


def load_resized(path: Path | str, size: int) -> np.ndarray:
    """uint8 (size, size, 3): shorter side resized to ``size``, then centre-cropped."""
    return square_crop(open_rgb(path, draft=size), size)


def square_crop(im: Image.Image, size: int) -> np.ndarray:
    """The cache's view of an image: shorter side to ``size``, centre crop, uint8 (size, size, 3)."""
    scale = size / min(im.width, im.height)
    w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
    im = im.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def decode_all(root: Path, paths: list[str], size: int, threads: int | None = None,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """uint8 (N, 3, size, size) in the order of ``paths``; PIL releases the GIL while decoding."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = load_resized(root / paths[i], size).transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 2) as pool:
        for done, _ in enumerate(pool.map(one, range(len(paths))), 1):
            if progress:
                progress(done)
    return out
