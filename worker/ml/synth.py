"""Procedural "paintings": synthetic artists a small CNN can tell apart.

Each artist has a palette, a stroke shape, a dominant stroke orientation and a
canvas texture; each painting varies composition, size and aspect ratio. Used
by the demo and the tests, where no real paintings can be downloaded.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from worker.ml.errors import ConfigError

NAMES = ["Anna Vermeer", "Élise Moreau", "Dürer-like", "Hokusai School", "Ravel Kandin", "Zoë Okafor",
         "Mateo Ruiz", "Ingrid Lund", "Kwame Asante", "Li Wei", "Oskar Brandt", "Priya Nair"]
SHAPES = ("line", "dot", "arc", "rect", "zigzag", "blob")


@dataclass(frozen=True)
class Artist:
    name: str
    palette: np.ndarray  # (5, 3) uint8 colours the artist paints with
    ground: tuple[int, int, int]  # canvas colour
    shape: str  # stroke shape
    angle: float  # dominant stroke orientation, radians
    stroke: int  # stroke width in px at 96 px
    texture: float  # strength of the canvas noise


def make_artists(n: int, seed: int) -> list[Artist]:
    rng = np.random.default_rng(seed)
    artists = []
    for i in range(n):
        hue = (i / n + rng.uniform(-0.03, 0.03)) % 1.0  # spread hues so palettes differ
        palette = np.array([
            [round(255 * c) for c in colorsys.hsv_to_rgb((hue + rng.uniform(-0.08, 0.08)) % 1, rng.uniform(0.4, 1), rng.uniform(0.35, 1))]
            for _ in range(5)
        ], dtype=np.uint8)
        ground = tuple(int(c) for c in np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1, rng.uniform(0.05, 0.3), rng.uniform(0.6, 0.95))) * 255)
        name = NAMES[i] if i < len(NAMES) else f"Artist {i + 1}"
        artists.append(Artist(name, palette, ground, SHAPES[i % len(SHAPES)], float(rng.uniform(0, np.pi)),
                              int(rng.integers(2, 6)), float(rng.uniform(4, 24))))
    return artists


def paint(artist: Artist, rng: np.random.Generator, size: int) -> Image.Image:
    aspect = rng.uniform(0.6, 1.6)
    w, h = (size, max(16, round(size / aspect))) if aspect >= 1 else (max(16, round(size * aspect)), size)
    im = Image.new("RGB", (w, h), artist.ground)
    draw = ImageDraw.Draw(im)
    scale = size / 96
    width = max(1, round(artist.stroke * scale))
    for _ in range(int(rng.integers(25, 45))):
        color = tuple(int(c) for c in artist.palette[rng.integers(len(artist.palette))])
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        length = rng.uniform(6, 22) * scale
        a = artist.angle + rng.normal(0, 0.25)
        dx, dy = np.cos(a) * length, np.sin(a) * length
        if artist.shape == "line":
            draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color, width=width)
        elif artist.shape == "dot":
            r = width * 1.5
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
        elif artist.shape == "arc":
            draw.arc([x - length, y - length / 2, x + length, y + length / 2], np.degrees(a), np.degrees(a) + 180, fill=color, width=width)
        elif artist.shape == "rect":
            draw.polygon([(x - dx, y - dy), (x + dx, y + dy), (x + dx - dy / 3, y + dy + dx / 3), (x - dx - dy / 3, y - dy + dx / 3)], fill=color)
        elif artist.shape == "zigzag":
            pts = [(x + dx * t - dy * 0.3 * (-1) ** k, y + dy * t + dx * 0.3 * (-1) ** k) for k, t in enumerate(np.linspace(-1, 1, 6))]
            draw.line(pts, fill=color, width=width)
        else:
            r = length / 2
            draw.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=color)
    im = im.filter(ImageFilter.GaussianBlur(0.4 * scale))
    noise = rng.normal(0, artist.texture, (h, w, 1))
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def write_synthetic(out: Path, artists: int, per_artist: int, seed: int = 0, size: int = 96) -> list[str]:
    """Write an ImageFolder ``out/<artist>/<n>.png``; returns the artist names."""
    if artists < 2:
        raise ConfigError(f"--artists must be at least 2, got {artists}")
    if per_artist < 1:
        raise ConfigError(f"--per-artist must be at least 1, got {per_artist}")
    if size < 16:
        raise ConfigError(f"--size must be at least 16 px, got {size}")
    rng = np.random.default_rng(seed)
    painters = make_artists(artists, seed)
    for artist in painters:
        folder = Path(out) / artist.name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_artist):
            paint(artist, rng, size).save(folder / f"{n:04d}.png")
    return [a.name for a in painters]
