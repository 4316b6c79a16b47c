"""Thumbnails kept in the artifacts: made once, beside nothing else, read by every report.

A report of a 20,000-pair batch shows a few hundred pictures; decoding the full-size PNGs each
time it is built would dominate its cost. The stylize job writes a work's thumbnail as it writes
the work, and a report makes any that is missing (controls, dataset images, rows written before
thumbnails existed) once, into the same place.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from core.artifacts import write_atomic
from corpus.imageio import ImageError, open_rgb

THUMB_PX = 160  # long side
THUMBS = Path("thumbs")  # under the artifacts root


def thumb_relative(relative: str) -> Path:
    """Where the thumbnail of the artifact at ``relative`` lives, relative to the artifacts root.

    The source's suffix stays in the name (``a.png`` -> ``a.png.jpg``): ``a.png`` and ``a.jpg`` in one
    dataset folder are two paintings and get two thumbnails."""
    return THUMBS / (Path(relative).as_posix() + ".jpg")


def make_thumbnail(source: Path, target: Path) -> Path:
    """Write ``target`` (a JPEG, long side THUMB_PX) from the picture at ``source``, read by the project's
    loader (``corpus.imageio.open_rgb``: EXIF rotation, transparency on white, 16-bit scans, bombs refused),
    a JPEG decoded at a reduced scale that keeps both sides at least THUMB_PX.

    A picture that cannot be read (gone, not an image, a bomb) raises ``OSError``, as ``Image.open`` did:
    a report catches it and shows the picture as missing."""
    try:
        img = open_rgb(source, draft=THUMB_PX)
    except ImageError as err:
        raise OSError(f"{source}: {err.reason}") from None
    return save_thumbnail(img, target)


def save_thumbnail(img: Image.Image, target: Path) -> Path:
    """Write ``target`` (a JPEG, long side THUMB_PX) from a picture already in memory (the stylize job's
    work, just saved), atomically: a report building in parallel with a worker never reads half a file."""
    small = img.convert("RGB")  # a copy: the caller's picture is never shrunk in place
    small.thumbnail((THUMB_PX, THUMB_PX), reducing_gap=2.0)
    return write_atomic(target, lambda tmp: small.save(tmp, format="JPEG", quality=85))


def ensure_thumbnail(source: Path, target: Path) -> Path:
    """``target``, made from ``source`` only when it does not exist yet."""
    return target if target.exists() else make_thumbnail(source, target)
