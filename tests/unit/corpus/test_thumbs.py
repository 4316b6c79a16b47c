"""Thumbnails in the artifacts: where they live, their size, written whole, made once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from corpus.thumbs import THUMB_PX, ensure_thumbnail, make_thumbnail, save_thumbnail, thumb_relative


def picture(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_a_thumbnail_lives_under_thumbs_beside_nothing_else():
    assert thumb_relative("stylized/batch/abc.png") == Path("thumbs/stylized/batch/abc.png.jpg")
    assert thumb_relative("controls/run-1/48/7.png") == Path("thumbs/controls/run-1/48/7.png.jpg")


def test_thumb_relative_keeps_two_paintings_that_differ_only_in_suffix_apart():
    assert thumb_relative("data/monet/a.png") != thumb_relative("data/monet/a.jpg")


def test_make_thumbnail_writes_a_jpeg_with_the_long_side_at_thumb_px(tmp_path):
    source = tmp_path / "wide.png"
    picture(640, 320).save(source)
    target = make_thumbnail(source, tmp_path / "thumbs" / "wide.jpg")
    with Image.open(target) as img:
        assert img.format == "JPEG" and img.size == (THUMB_PX, THUMB_PX // 2)
    assert [p.name for p in target.parent.iterdir()] == ["wide.jpg"]  # no partial file left behind


def test_save_thumbnail_leaves_the_callers_picture_as_it_was(tmp_path):
    work = picture(48, 96)
    before = work.tobytes()
    target = save_thumbnail(work, tmp_path / "a" / "b.jpg")
    assert work.size == (48, 96) and work.tobytes() == before
    with Image.open(target) as img:
        assert img.size == (48, 96)  # never enlarged
    small = picture(320, 200).convert("L")  # any mode: thumbnails are RGB
    with Image.open(save_thumbnail(small, tmp_path / "c.jpg")) as img:
        assert img.mode == "RGB" and img.size == (THUMB_PX, 100)


def test_ensure_thumbnail_makes_it_once(tmp_path):
    source, target = tmp_path / "s.png", tmp_path / "t.jpg"
    picture(200, 200).save(source)
    ensure_thumbnail(source, target)
    made = target.stat().st_mtime_ns
    source.unlink()  # the source is not read again
    assert ensure_thumbnail(source, target) == target and target.stat().st_mtime_ns == made
