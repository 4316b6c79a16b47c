"""Every image mode a museum scan comes in loads as RGB; broken files say why."""

import io

import numpy as np
import pytest
from PIL import Image

from worker.ml.imageio import ImageError, decode_all, load_resized, open_rgb, probe


def save(path, im, **kw):
    im.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "1", "LA"])
def test_modes_become_rgb(tmp_path, mode):
    ext = "jpg" if mode == "CMYK" else "png"
    im = Image.new("RGB", (12, 10), (200, 100, 50)).convert(mode)
    out = open_rgb(save(tmp_path / f"x.{ext}", im))
    assert out.mode == "RGB" and out.size == (12, 10)


def test_transparency_composites_on_white(tmp_path):
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert open_rgb(save(tmp_path / "t.png", im)).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0] * 256)
    assert open_rgb(save(tmp_path / "p.png", pal, transparency=0)).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = save(tmp_path / "g16.png", Image.fromarray(a))  # mode I;16
    assert [p[0] for p in np.asarray(open_rgb(path))[0]] == [0, 128, 255]


def test_exif_rotation_is_applied(tmp_path):
    im = Image.new("RGB", (30, 10), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    path = save(tmp_path / "r.jpg", im, exif=exif.tobytes())
    assert open_rgb(path).size == (10, 30)
    assert (probe(path).width, probe(path).height) == (10, 30)


def test_bomb_zero_truncated_and_text_are_refused(tmp_path):
    big = save(tmp_path / "big.png", Image.new("RGB", (100, 100)))
    with pytest.raises(ImageError, match="decompression bomb"):
        open_rgb(big, max_pixels=5000)
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        probe(tmp_path / "zero.jpg")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:100])
    with pytest.raises(ImageError):
        probe(tmp_path / "cut.jpg")
    (tmp_path / "t.jpg").write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        probe(tmp_path / "t.jpg")


def test_resize_and_decode_all_keep_order(tmp_path):
    paths = []
    for i, size in enumerate([(40, 20), (20, 40), (33, 33)]):
        save(tmp_path / f"{i}.png", Image.new("RGB", size, (i * 100, 0, 0)))
        paths.append(f"{i}.png")
    assert load_resized(tmp_path / "0.png", 16).shape == (16, 16, 3)
    batch = decode_all(tmp_path, paths, 16, threads=2)
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == np.uint8
    assert [int(batch[i, 0].mean()) for i in range(3)] == [0, 100, 200]
