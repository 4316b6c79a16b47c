"""Robust image loading: every mode a museum scan comes in, EXIF rotation, bombs refused.

Decoding happens once per (dataset, size) into the uint8 cache, so this is the
only code that ever sees a file's bytes. Every failure a file can cause comes
out as ``ImageError`` with a short reason; ingestion records it and moves on.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import ConfigError

MAX_PIXELS = 89_478_485  # PIL's own default limit: ~0.25 GB of RGB
FORMATS = ("JPEG", "PNG", "BMP", "DIB", "GIF", "TIFF", "WEBP")  # what PIL may parse; see _formats()
EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees

# PIL checks its own global limit inside ``Image.open`` (a warning above
# MAX_IMAGE_PIXELS, an error above twice that), before we can look at the size.
# Our limit is per call, so PIL's is lifted while a header is parsed and ours
# is applied right after, before any pixel is decoded. The lock keeps threads
# from restoring each other's value; only header parsing of in-memory bytes
# runs under it, never file I/O or decoding.
_HEADER_LOCK = threading.Lock()


class ImageError(Exception):
    """A file that cannot be used as an image; ``reason`` (also the message) says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF rotation
    height: int
    sha256: str  # of the file's bytes
    phash: str | None = None  # perceptual hash (16 hex digits) when asked for; None for a flat image


def _scale_to_8bit(a: np.ndarray, top: float) -> np.ndarray:
    return np.clip(a.astype(np.float64) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB; transparency composited onto white (paper, not black)."""
    if im.mode.startswith("I;16"):
        # 16-bit greyscale scans: map the full 16-bit range to 8 bits; convert() would clip at 255.
        return Image.fromarray(_scale_to_8bit(np.asarray(im), 65535.0), "L").convert("RGB")
    if im.mode in ("I", "F"):
        # 32-bit int or float: the container says nothing about the range, so the values do.
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(a.max()) if a.size else 0.0
        if im.mode == "F" and top <= 1.0:
            top = 1.0  # a float image in 0..1
        elif top <= 255:
            top = 255.0  # already 8-bit values
        elif top <= 65535:
            top = 65535.0  # 16-bit values widened to I (how PIL opens some 16-bit files)
        return Image.fromarray(_scale_to_8bit(a, top), "L").convert("RGB")
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):
        im = im.convert("RGBA")  # palette or colour-key transparency becomes an alpha channel
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, RGBX, ...


# What each EXIF orientation needs to be shown upright (as ImageOps.exif_transpose does).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION) or 1)
    except Exception:  # noqa: BLE001 - broken EXIF is metadata, not a reason to lose the picture
        return 1
    return value if value in _TRANSPOSE else 1


def upright(im: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation."""
    return im.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else im


@functools.cache
def _formats() -> tuple[str, ...]:
    # Raster formats only: the full plugin list includes EPS, which PIL renders by running
    # Ghostscript on the file - not something to do with files from the internet.
    Image.init()
    return tuple(f for f in FORMATS if f in Image.OPEN)


def _decode(data: bytes, max_pixels: int, draft: int | None = None) -> tuple[Image.Image, int]:
    """(8-bit RGB image, EXIF orientation still to apply); ImageError for anything a file can do wrong."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with _HEADER_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(io.BytesIO(data), formats=_formats())
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        pixels = im.width * im.height
        if pixels > max_pixels:
            raise ImageError(f"decompression bomb: {pixels} pixels > limit {max_pixels}")
        if draft:
            # JPEG only (a no-op elsewhere): libjpeg's DCT scaling decodes at 1/2, 1/4 or 1/8
            # while keeping both sides >= draft, several times faster for thumbnails.
            im.draft("RGB", (draft, draft))
        im.load()
        return _to_rgb(im), _orientation(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image PIL can read") from None
    except Image.DecompressionBombError as err:  # a GIF frame larger than its canvas, say
        raise ImageError(f"decompression bomb: {err}") from None
    except MemoryError:
        raise ImageError("too large to decode in memory") from None
    except Exception as err:  # noqa: BLE001 - a corrupt file can make any decoder raise anything
        raise ImageError(f"unreadable image: {type(err).__name__}: {err}") from None


def open_rgb(path: Path | str, max_pixels: int = MAX_PIXELS, draft: int | None = None) -> Image.Image:
    """The image as 8-bit RGB, EXIF orientation applied. Raises ImageError with a reason.

    Images with more than ``max_pixels`` pixels are refused from their header,
    before anything is decoded. ``draft``: a JPEG may be decoded at a reduced
    scale that keeps both sides at least this many pixels.
    """
    im, orientation = _decode(_read(path), max_pixels, draft)
    return upright(im, orientation)


def _read(path: Path | str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("a folder, not a file") from None
    except OSError as err:
        raise ImageError(f"cannot read file: {err.strerror or err}") from None
    except ValueError:  # the OS cannot even name it (an embedded NUL byte)
        raise ImageError("not a valid file name") from None


def probe(path: Path | str, max_pixels: int = MAX_PIXELS, phash: bool = False) -> ImageInfo:
    """Decode once to verify the file; size after EXIF rotation, sha256 of the bytes.

    The hash is of the very bytes that were decoded, so it describes the verified file.
    ``phash``: also the perceptual hash of the same decoded pixels (see ``perceptual_hash``).
    """
    data = _read(path)
    im, orientation = _decode(data, max_pixels)
    w, h = im.size
    if orientation in _SWAPS_SIDES:
        w, h = h, w
    return ImageInfo(w, h, hashlib.sha256(data).hexdigest(), perceptual_hash(im, orientation) if phash else None)


PHASH_SIDE = 32  # imagehash.phash's working size for a 64-bit hash: hash_size 8 x highfreq_factor 4
FLAT_STD = 1.0  # grey levels: below this the 32 x 32 thumbnail has no structure to hash


def perceptual_hash(im: Image.Image, orientation: int = 1) -> str | None:
    """64-bit pHash (``imagehash.phash``) of the upright image as 16 hex digits, or None if it is flat.

    The DCT of a 32 x 32 greyscale thumbnail, each of the 8 x 8 lowest frequencies
    compared with their median: resizing, re-encoding and mild colour changes move
    few bits. The thumbnail is made here (reducing_gap: box-averaged first, ~3x
    faster on a 12 MP scan than one Lanczos pass) and rotated by the EXIF
    orientation, so an upright copy without EXIF hashes like its original. An image
    without structure (one colour) would hash to a constant, making every blank
    canvas a "duplicate" of every other: it gets None and is never grouped.
    """
    import imagehash  # loads scipy: ingestion pays for it, the CLI's start does not

    small = upright(
        im.convert("L").resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0), orientation
    )
    if float(np.asarray(small, dtype=np.float32).std()) < FLAT_STD:
        return None
    return str(imagehash.phash(small))  # already 32 x 32 greyscale: phash's own resize is a copy


def load_resized(path: Path | str, size: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """uint8 (size, size, 3): shorter side resized to ``size`` (antialiased), centre-cropped."""
    if size < 1:
        raise ConfigError(f"image size must be at least 1 px, got {size}")
    return square_crop(open_rgb(path, max_pixels, draft=size), size)


def square_crop(im: Image.Image, size: int) -> np.ndarray:
    """The cache's view of an RGB image: shorter side to ``size``, centre crop, uint8 (size, size, 3).

    One definition for the cache and for anything classifying images outside it,
    so both see the same pixels.
    """
    if im.mode != "RGB":
        im = _to_rgb(im)
    w, h = im.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    # Resizing just the centre square is resizing the shorter side then cropping, without
    # resampling pixels that are thrown away. PIL's bilinear filter widens its support when
    # shrinking, so it is antialiased; reducing_gap first box-averages big reductions (faster).
    out = im.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side), reducing_gap=2.0)
    return np.array(out, dtype=np.uint8)  # writable (asarray of a PIL image is not): torch.from_numpy warns otherwise


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (containers, taskset)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 2


def decode_all(
    root: Path, paths: list[str], size: int, threads: int | None = None, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """uint8 (N, 3, size, size) in the order of ``paths`` (relative to ``root``).

    Threads, not processes: PIL releases the GIL while reading, decoding and
    resizing, and a Celery prefork child may not start processes of its own.
    ``progress(done)`` is called from the calling thread. A file that fails
    raises ImageError naming it (it was verified at ingestion, so it changed since).
    """
    if size < 1:
        raise ConfigError(f"image size must be at least 1 px, got {size}")
    root = Path(root)
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        try:
            out[i] = load_resized(root / paths[i], size).transpose(2, 0, 1)
        except ImageError as err:
            raise ImageError(f"{paths[i]}: {err.reason}") from None

    with ThreadPoolExecutor(max_workers=max(1, threads or default_threads())) as pool:
        for done, _ in enumerate(pool.map(one, range(len(paths))), 1):
            if progress:
                progress(done)
    return out
