"""Every image mode a museum scan comes in loads as RGB; broken files say why."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from corpus.imageio import MAX_PIXELS, ImageError, ImageInfo, decode_all, load_resized, open_rgb, probe, square_crop


def save(path, im, **kw):
    im.save(path, **kw)
    return path


def near(a, b, tol=3):
    return all(abs(int(x) - int(y)) <= tol for x, y in zip(a, b))


@pytest.mark.parametrize(
    "mode,ext",
    [
        ("L", "png"),
        ("LA", "png"),
        ("1", "png"),
        ("P", "png"),
        ("RGBA", "png"),
        ("CMYK", "jpg"),
        ("L", "jpg"),
        ("RGB", "tif"),
        ("I;16", "tif"),
    ],
)
def test_modes_become_rgb(tmp_path, mode, ext):
    im = Image.new("RGB", (12, 10), (200, 100, 50)).convert(mode)
    out = open_rgb(save(tmp_path / f"x.{ext}", im))
    assert out.mode == "RGB" and out.size == (12, 10)


def test_colours_survive_conversion(tmp_path):
    assert open_rgb(save(tmp_path / "g.png", Image.new("L", (4, 4), 77))).getpixel((0, 0)) == (77, 77, 77)
    cmyk = open_rgb(save(tmp_path / "c.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=95))
    assert near(cmyk.getpixel((4, 4)), (255, 0, 0), tol=6)
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert open_rgb(save(tmp_path / "p.png", pal)).getpixel((0, 0)) == (10, 200, 30)
    assert open_rgb(save(tmp_path / "b.png", Image.new("1", (4, 4), 1))).getpixel((0, 0)) == (255, 255, 255)


def test_transparency_composites_on_white(tmp_path):
    assert open_rgb(save(tmp_path / "t.png", Image.new("RGBA", (4, 4), (255, 0, 0, 0)))).getpixel((0, 0)) == (
        255,
        255,
        255,
    )
    half = open_rgb(save(tmp_path / "h.png", Image.new("RGBA", (4, 4), (0, 0, 0, 128)))).getpixel((0, 0))
    assert near(half, (127, 127, 127), tol=2)
    assert open_rgb(save(tmp_path / "la.png", Image.new("LA", (4, 4), (0, 0)))).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0] * 256)
    assert open_rgb(save(tmp_path / "p.png", pal, transparency=0)).getpixel((0, 0)) == (255, 255, 255)
    key = Image.new("RGB", (4, 4), (1, 2, 3))  # colour-key transparency (tRNS in an RGB PNG)
    assert open_rgb(save(tmp_path / "k.png", key, transparency=(1, 2, 3))).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = save(tmp_path / "g16.png", Image.fromarray(a))
    with Image.open(path) as im:
        assert im.mode == "I;16"
    assert [p[0] for p in np.asarray(open_rgb(path))[0]] == [0, 1, 128, 255]


def test_32_bit_int_and_float_are_scaled_by_their_range(tmp_path):
    ints = np.array([[0, 32768, 65535]], dtype=np.int32)  # 16-bit values in a 32-bit container
    assert [p[0] for p in np.asarray(open_rgb(save(tmp_path / "i.tif", Image.fromarray(ints))))[0]] == [0, 128, 255]
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert [p[0] for p in np.asarray(open_rgb(save(tmp_path / "f.tif", Image.fromarray(floats))))[0]] == [0, 128, 255]


def exif_rotated(path):
    """30x10 stored, left third red, EXIF orientation 6: shown upright it is 10x30, red on top."""
    a = np.zeros((10, 30, 3), np.uint8)
    a[:, :10] = (255, 0, 0)
    a[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return save(path, Image.fromarray(a), exif=exif.tobytes(), quality=95)


def test_exif_rotation_is_applied(tmp_path):
    path = exif_rotated(tmp_path / "r.jpg")
    im = open_rgb(path)
    assert im.size == (10, 30)
    assert near(im.getpixel((5, 2)), (255, 0, 0), tol=20) and near(im.getpixel((5, 27)), (0, 0, 255), tol=20)
    info = probe(path)
    assert (info.width, info.height) == (10, 30)
    square = load_resized(path, 10)  # the centre square is all blue whichever way round
    assert near(square[5, 5], (0, 0, 255), tol=20)


def png_header_only(width, height):
    """A PNG that claims ``width`` x ``height`` but carries almost no pixel data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bomb_is_refused_from_the_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(20000, 10000))
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match=f"^decompression bomb: 200000000 pixels > limit {MAX_PIXELS}$"):
        probe(path)  # decoding would allocate 600 MB and then fail as truncated
    assert time.perf_counter() - t0 < 1
    with pytest.raises(ImageError, match="decompression bomb: 10000 pixels > limit 5000"):
        open_rgb(save(tmp_path / "big.png", Image.new("RGB", (100, 100))), max_pixels=5000)


def test_our_limit_decides_not_pils(tmp_path, monkeypatch):
    # PIL's global limit is lower than ours: it would warn (an error under pytest) or refuse.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = save(tmp_path / "x.png", Image.new("RGB", (100, 100)))
    assert open_rgb(path).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored after the header was read


def test_broken_files_say_why(tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        probe(tmp_path / "zero.jpg")
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # cut in the middle of the scan
    with pytest.raises(ImageError, match="(?i)truncated"):
        probe(tmp_path / "cut.jpg")
    (tmp_path / "head.jpg").write_bytes(data[:100])  # not even a whole header
    with pytest.raises(ImageError):
        probe(tmp_path / "head.jpg")
    (tmp_path / "t.jpg").write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        probe(tmp_path / "t.jpg")
    with pytest.raises(ImageError, match="file not found"):
        probe(tmp_path / "missing.jpg")
    # EPS is refused even though PIL could render it: that would run Ghostscript on the file.
    (tmp_path / "x.jpg").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageError, match="not an image") as err:
        probe(tmp_path / "x.jpg")
    assert err.value.reason == str(err.value)


def test_probe_hashes_the_bytes(tmp_path):
    import hashlib

    path = save(tmp_path / "x.png", Image.new("RGB", (7, 5), (1, 2, 3)))
    assert probe(path) == ImageInfo(7, 5, hashlib.sha256(path.read_bytes()).hexdigest())


def test_load_resized_crops_the_centre(tmp_path):
    a = np.zeros((20, 60, 3), np.uint8)
    a[:, :20], a[:, 20:40], a[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    out = load_resized(save(tmp_path / "bands.png", Image.fromarray(a)), 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    # Only the green middle band is left (the outermost columns are antialiased with its neighbours).
    assert (out[:, 1:-1] == (0, 255, 0)).all()
    tall = load_resized(save(tmp_path / "tall.png", Image.fromarray(a.transpose(1, 0, 2).copy())), 10)
    assert (tall[1:-1] == (0, 255, 0)).all()


def test_square_crop_is_the_caches_view(tmp_path):
    rng = np.random.default_rng(1)
    path = save(tmp_path / "x.png", Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)))
    assert (square_crop(open_rgb(path), 12) == load_resized(path, 12)).all()
    assert square_crop(Image.new("RGBA", (9, 6), (0, 0, 0, 0)), 4).shape == (4, 4, 3)


def test_load_resized_large_jpeg_uses_draft(tmp_path):
    path = save(tmp_path / "big.jpg", Image.new("RGB", (800, 600), (30, 120, 210)), quality=95)
    out = load_resized(path, 32)
    assert out.shape == (32, 32, 3) and near(out[16, 16], (30, 120, 210), tol=4)
    grey = load_resized(save(tmp_path / "grey.jpg", Image.new("L", (300, 200), 90)), 16)
    assert grey.shape == (16, 16, 3) and near(grey[8, 8], (90, 90, 90), tol=2)


def test_decode_all_keeps_order_and_shape(tmp_path):
    paths = []
    for i, size in enumerate([(40, 20), (20, 40), (33, 33), (17, 50), (50, 17)]):
        save(tmp_path / f"{i}.png", Image.new("RGB", size, (i * 50, 0, 255 - i * 50)))
        paths.append(f"{i}.png")
    seen = []
    batch = decode_all(tmp_path, paths, 16, threads=3, progress=seen.append)
    assert batch.shape == (5, 3, 16, 16) and batch.dtype == np.uint8
    assert [int(batch[i, 0].mean()) for i in range(5)] == [0, 50, 100, 150, 200]
    assert [int(batch[i, 2].mean()) for i in range(5)] == [255, 205, 155, 105, 55]
    assert seen == [1, 2, 3, 4, 5]
    assert decode_all(tmp_path, [], 16).shape == (0, 3, 16, 16)


def test_decode_all_names_the_file_that_fails(tmp_path):
    save(tmp_path / "ok.png", Image.new("RGB", (8, 8)))
    (tmp_path / "bad.png").write_text("no")
    with pytest.raises(ImageError, match="^bad.png: not an image"):
        decode_all(tmp_path, ["ok.png", "bad.png"], 8, threads=2)
