"""Procedural "paintings": synthetic artists a small CNN can tell apart.

Each artist has a canvas colour, a palette, a stroke shape, a dominant stroke
orientation and a canvas texture; each painting varies the composition (where
the strokes cluster, how many, the light falling across the canvas), the size
and the aspect ratio. Used by the demo and the tests, where no real paintings
can be downloaded.

The signals are layered on purpose: colour survives any resize, so even a tiny
CNN at 32 px separates the artists after an epoch or two; stroke shape,
orientation and texture are there for larger inputs and for style transfer to
have something to move.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.errors import ConfigError

# Readable, unique, safe as folder names; the non-ASCII ones check that unicode
# survives the filesystem, the store and the reports. "Élise Moreau" comes second
# so that every dataset of two or more artists has one.
NAMES = (
    "Anna Vermeer",
    "Élise Moreau",
    "Dürer-like",
    "Hokusai School",
    "Ravel Kandin",
    "Zoë Okafor",
    "Mateo Ruiz",
    "Ingrid Lund",
    "Kwame Asante",
    "Li Wei",
    "Oskar Brandt",
    "Priya Nair",
)
SHAPES = ("line", "dot", "arc", "rect", "zigzag", "ring", "triangle", "hatch")
TEXTURES = ("grain", "weave", "stripes", "blotch", "smooth")
GOLDEN = (math.sqrt(5) - 1) / 2  # spreads orientations evenly for any number of artists


@dataclass(frozen=True)
class Artist:
    name: str
    ground: tuple[int, int, int]  # canvas colour: the largest area of every painting
    palette: np.ndarray  # (4, 3) uint8 stroke colours
    shape: str  # one of SHAPES
    angle: float  # dominant stroke orientation, radians in [0, pi)
    spread: float  # how far single strokes stray from ``angle``, radians
    stroke: float  # stroke width in px on a 96 px canvas
    density: float  # strokes per 96x96 px of canvas
    texture: str  # one of TEXTURES
    grain: float  # texture amplitude, in 8-bit levels


def _rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return round(255 * r), round(255 * g), round(255 * b)


def make_artists(n: int, seed: int) -> list[Artist]:
    """``n`` artists, deterministic from ``seed``."""
    rng = np.random.default_rng([seed % (1 << 64), 1])
    offset = rng.uniform(0, 1)
    artists = []
    for i in range(n):
        # Hues evenly around the wheel and canvases alternately light and dark,
        # so neighbours on the wheel still differ in brightness.
        hue = offset + i / n
        light = i % 2 == 0
        ground = _rgb(hue, rng.uniform(0.45, 0.7), rng.uniform(0.75, 0.9) if light else rng.uniform(0.3, 0.42))
        # Strokes in hues next to the canvas's (so the artist's colour shows at any scale), in
        # the opposite brightness, plus one complementary accent.
        near = hue + rng.choice([-0.12, 0.1, 0.15])
        palette = np.array(
            [
                _rgb(
                    near + rng.uniform(-0.04, 0.04),
                    rng.uniform(0.5, 0.9),
                    rng.uniform(0.2, 0.45) if light else rng.uniform(0.7, 0.95),
                )
                for _ in range(3)
            ]
            + [_rgb(hue + 0.5, rng.uniform(0.6, 0.9), 0.6)],
            dtype=np.uint8,
        )
        artists.append(
            Artist(
                name=NAMES[i] if i < len(NAMES) else f"Artist {i + 1}",
                ground=ground,
                palette=palette,
                shape=SHAPES[i % len(SHAPES)],
                angle=(i * GOLDEN * math.pi + rng.uniform(0, 0.2)) % math.pi,
                spread=float(rng.uniform(0.1, 0.3)),
                stroke=float(rng.uniform(2, 5)),
                density=float(rng.uniform(25, 55)),
                texture=TEXTURES[i % len(TEXTURES)],  # with 8 shapes and 5 textures, no two of 40 artists share both
                grain=float(rng.uniform(6, 16)),
            )
        )
    return artists


def _canvas_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    # Long side ``size``, aspect 0.6-1.6 (portrait and landscape alike), short side at least 16 px.
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    if aspect >= 1:
        return size, max(16, round(size / aspect))
    return max(16, round(size * aspect)), size


def _ground(artist: Artist, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """The canvas with light falling across it from a random side: (h, w, 3) float32."""
    light = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(light) * (xx / w - 0.5) + np.sin(light) * (yy / h - 0.5)) * rng.uniform(20, 50)
    return np.asarray(artist.ground, np.float32) + ramp[..., None]


def _texture(artist: Artist, rng: np.random.Generator, w: int, h: int, scale: float) -> np.ndarray:
    """The artist's surface: (h, w, 1) float32 offsets, vectorised."""
    amp = artist.grain
    if artist.texture == "grain":
        return rng.normal(0, amp, (h, w, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    if artist.texture == "weave":
        period = 6 * scale
        return (amp * np.sin(2 * np.pi * xx / period + phase) * np.sin(2 * np.pi * yy / period))[..., None]
    if artist.texture == "stripes":
        # Stripes along the artist's stroke direction reinforce its orientation.
        across = -np.sin(artist.angle) * xx + np.cos(artist.angle) * yy
        return (amp * np.sin(2 * np.pi * across / (9 * scale) + phase))[..., None]
    if artist.texture == "blotch":
        coarse = rng.normal(0, amp * 1.5, (max(2, h // 12), max(2, w // 12)))
        up = Image.fromarray(coarse.astype(np.float32), "F").resize((w, h), Image.Resampling.BICUBIC)
        return np.asarray(up, dtype=np.float32)[..., None]
    return rng.normal(0, amp / 4, (h, w, 1)).astype(np.float32)  # "smooth": barely any grain


def _stroke(
    draw: ImageDraw.ImageDraw,
    shape: str,
    x: float,
    y: float,
    a: float,
    length: float,
    width: int,
    color: tuple[int, int, int],
) -> None:
    dx, dy = math.cos(a) * length, math.sin(a) * length
    nx, ny = -dy, dx  # normal to the stroke
    if shape == "line":
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color, width=width)
    elif shape == "dot":
        # A short row of dots: stippling that still has a direction.
        r = width * 1.2
        for t in (-0.8, 0, 0.8):
            cx, cy = x + dx * t, y + dy * t
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
    elif shape == "arc":
        deg = math.degrees(a)
        draw.arc([x - length, y - length, x + length, y + length], deg, deg + 150, fill=color, width=width)
    elif shape == "rect":
        k = 0.35
        draw.polygon(
            [
                (x - dx - nx * k, y - dy - ny * k),
                (x + dx - nx * k, y + dy - ny * k),
                (x + dx + nx * k, y + dy + ny * k),
                (x - dx + nx * k, y - dy + ny * k),
            ],
            fill=color,
        )
    elif shape == "zigzag":
        pts = [
            (x + dx * t + nx * 0.3 * (-1) ** k, y + dy * t + ny * 0.3 * (-1) ** k)
            for k, t in enumerate((-1, -0.6, -0.2, 0.2, 0.6, 1))
        ]
        draw.line(pts, fill=color, width=width)
    elif shape == "ring":
        draw.ellipse(
            [x - length * 0.7, y - length * 0.7, x + length * 0.7, y + length * 0.7], outline=color, width=width
        )
    elif shape == "triangle":
        draw.polygon(
            [(x + dx, y + dy), (x - dx + nx * 0.5, y - dy + ny * 0.5), (x - dx - nx * 0.5, y - dy - ny * 0.5)],
            fill=color,
        )
    else:  # "hatch": two crossing strokes, the dominant one longer
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color, width=width)
        draw.line([(x - nx * 0.5, y - ny * 0.5), (x + nx * 0.5, y + ny * 0.5)], fill=color, width=width)


def paint(artist: Artist, rng: np.random.Generator, size: int) -> Image.Image:
    """One painting by ``artist``, long side ``size`` px."""
    w, h = _canvas_size(rng, size)
    scale = size / 96
    base = np.clip(_ground(artist, rng, w, h), 0, 255).astype(np.uint8)
    im = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(im)
    width = max(1, round(artist.stroke * scale))
    # Composition: strokes gather around one to three focal points, the rest are scattered.
    foci = rng.uniform((0.15 * w, 0.15 * h), (0.85 * w, 0.85 * h), (int(rng.integers(1, 4)), 2))
    n = max(4, round(artist.density * (w * h) / (96 * 96 * scale * scale) * rng.uniform(0.7, 1.3)))
    # Every stroke's parameters drawn at once: per-stroke generator calls would dominate the time.
    near = rng.random(n) < 0.6
    focus = foci[rng.integers(len(foci), size=n)]
    xs = np.where(near, rng.normal(focus[:, 0], 0.15 * w), rng.uniform(0, w, n))
    ys = np.where(near, rng.normal(focus[:, 1], 0.15 * h), rng.uniform(0, h, n))
    colors = artist.palette[rng.integers(len(artist.palette), size=n)].tolist()
    angles = artist.angle + rng.normal(0, artist.spread, n)
    lengths = rng.uniform(5, 14, n) * scale
    for x, y, a, length, color in zip(xs.tolist(), ys.tolist(), angles.tolist(), lengths.tolist(), colors):
        _stroke(draw, artist.shape, x, y, a, length, width, tuple(color))
    pixels = np.asarray(im, dtype=np.float32) + _texture(artist, rng, w, h, scale)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_synthetic(out: Path, artists: int, per_artist: int, seed: int = 0, size: int = 96) -> list[str]:
    """Write an ImageFolder ``out/<artist>/<n>.jpg``; returns the artist names.

    Deterministic from ``seed``: every painting has its own random stream, so a
    larger ``per_artist`` adds paintings without changing the first ones.
    """
    if artists < 2:
        raise ConfigError(f"--artists must be at least 2 (a classifier needs two classes), got {artists}")
    if per_artist < 1:
        raise ConfigError(f"--per-artist must be at least 1, got {per_artist}")
    if size < 16:
        raise ConfigError(f"--size must be at least 16 px, got {size}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    digits = max(4, len(str(per_artist - 1)))
    painters = make_artists(artists, seed)
    for i, artist in enumerate(painters):
        folder = out / artist.name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_artist):
            rng = np.random.default_rng([seed % (1 << 64), 2, i, k])
            # JPEG like real scans (and so the loader's JPEG draft path is exercised); quality
            # high enough that the texture survives the compression.
            paint(artist, rng, size).save(folder / f"{k:0{digits}d}.jpg", quality=92)
    return [a.name for a in painters]
