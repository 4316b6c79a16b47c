"""Thumbnails kept in the artifacts: made once, beside nothing else, read by every report.

A report of a 20,000-pair batch shows a few hundred pictures; decoding the full-size PNGs each
time it is built would dominate its cost. The stylize job writes a work's thumbnail as it writes
the work, and a report makes any that is missing (controls, dataset images, rows written before
thumbnails existed) once, into the same place.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

THUMB_PX = 160  # long side
THUMBS = Path("thumbs")  # under the artifacts root


def thumb_relative(relative: str) -> Path:
    """Where the thumbnail of the artifact at ``relative`` lives, relative to the artifacts root."""
    return THUMBS / (Path(relative).with_suffix("").as_posix() + ".jpg")


def make_thumbnail(source: Path, target: Path) -> Path:
    """Write ``target`` (a JPEG, long side THUMB_PX) from the picture at ``source``."""
    with Image.open(source) as img:
        img.draft("RGB", (THUMB_PX, THUMB_PX))  # a JPEG source decodes at a reduced scale; others ignore it
        return save_thumbnail(img, target)


def save_thumbnail(img: Image.Image, target: Path) -> Path:
    """Write ``target`` (a JPEG, long side THUMB_PX) from a picture already in memory (the stylize job's
    work, just saved), atomically: a report building in parallel with a worker never reads half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    small = img.convert("RGB")  # a copy: the caller's picture is never shrunk in place
    small.thumbnail((THUMB_PX, THUMB_PX), reducing_gap=2.0)
    small.save(partial, format="JPEG", quality=85)
    os.replace(partial, target)
    return target


def ensure_thumbnail(source: Path, target: Path) -> Path:
    """``target``, made from ``source`` only when it does not exist yet."""
    return target if target.exists() else make_thumbnail(source, target)
