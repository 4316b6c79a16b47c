"""Choosing (content, style) pairs for a style batch. Pure, seeded."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from core.errors import ConfigError

MODES = ("cross-artist", "all")


def sample_pairs(by_artist: dict[str, list[int]], mode: str, per_cell: int, seed: int) -> list[tuple[int, int]]:
    """For every ordered (style artist A, content artist B), ``per_cell`` distinct random (content, style) pairs.

    ``cross-artist`` skips A == B; ``all`` keeps it (an image with itself last, see ``cell_pairs``). Each cell has its own
    random stream, so adding an artist does not reshuffle the others' pairs. A cell with fewer than ``per_cell``
    distinct pairs is refused before anything is drawn: fewer pairs than asked for would go unnoticed.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown --pairs {mode!r}: give cross-artist, all or a CSV file")
    if per_cell < 1:
        raise ConfigError(f"--per-cell must be at least 1, got {per_cell}")
    artists = sorted(a for a, imgs in by_artist.items() if imgs)
    if len(artists) < 2:
        raise ConfigError("style transfer between artists needs images of at least 2 artists in the chosen split")
    images = {a: sorted(set(by_artist[a])) for a in artists}
    cells = [(s, c) for s in artists for c in artists if not (mode == "cross-artist" and s == c)]
    check_cells_hold(cells, images, per_cell)
    pairs = []
    for style_artist, content_artist in cells:
        rng = random.Random(f"{seed}:{style_artist}:{content_artist}")
        same = style_artist == content_artist
        pairs += cell_pairs(images[content_artist], images[style_artist], same, rng, per_cell)
    return pairs


def check_cells_hold(cells: list[tuple[str, str]], images: dict[str, list[int]], per_cell: int) -> None:
    """Refuse ``per_cell`` if the smallest cell holds fewer distinct pairs, naming that cell and what it holds."""
    # Every content image with every style image: within one artist that includes an image with itself.
    sizes = {(s, c): len(images[c]) * len(images[s]) for s, c in cells}
    (style, content), most = min(sizes.items(), key=lambda kv: kv[1])
    if most >= per_cell:
        return
    n_content, n_style = len(images[content]), len(images[style])
    if style == content:
        held = f"{n_content} image{'s' * (n_content != 1)} of one artist, each paired with itself too"
    else:
        held = f"{n_content} content × {n_style} style image{'s' * (n_style != 1)}"
    raise ConfigError(
        f"--per-cell {per_cell}: cell {style}→{content} has only {most} distinct pair{'s' * (most != 1)} ({held}); "
        f"use --per-cell {most} or fewer"
    )


def cell_pairs(content: list[int], style: list[int], same: bool, rng: random.Random, k: int) -> list[tuple[int, int]]:
    """``k`` distinct (content, style) pairs drawn without replacement, by index, so a cell of a million
    possible pairs is never listed. ``same``: both lists are one artist's; an image is paired with itself only
    once every pair of two different images is drawn (a painting in its own style is the least telling pair)."""
    if not same:
        return [
            (content[i // len(style)], style[i % len(style)]) for i in rng.sample(range(len(content) * len(style)), k)
        ]
    n = len(content)
    others = min(k, n * (n - 1))
    pairs = []
    for i in rng.sample(range(n * (n - 1)), others):
        c, s = divmod(i, n - 1)
        pairs.append((content[c], style[s + (s >= c)]))  # index c is the content image itself: skipped
    pairs += [(content[i], style[i]) for i in rng.sample(range(n), k - others)]
    return pairs


def read_pairs(path: Path, id_of: dict[str, int]) -> list[tuple[int, int]]:
    """A CSV with columns content,style naming image paths relative to the dataset root."""
    if not path.is_file():
        raise ConfigError(f"pairs file {path} not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"content", "style"} <= set(reader.fieldnames or []):
            raise ConfigError(f"{path} needs the columns content,style")
        pairs = []
        for n, row in enumerate(reader, start=2):
            missing = [row[k] for k in ("content", "style") if row[k] not in id_of]
            if missing:
                raise ConfigError(f"{path}:{n}: {missing[0]!r} is not a usable image of this dataset")
            pairs.append((id_of[row["content"]], id_of[row["style"]]))
    if not pairs:
        raise ConfigError(f"{path} names no pairs")
    return pairs
