"""Choosing (content, style) pairs for a style batch. Pure, seeded."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from core.errors import ConfigError

MODES = ("cross-artist", "all")


def sample_pairs(by_artist: dict[str, list[int]], mode: str, per_cell: int, seed: int) -> list[tuple[int, int]]:
    """For every ordered (style artist A, content artist B), ``per_cell`` distinct random (content, style) pairs.

    ``cross-artist`` skips A == B; ``all`` keeps it (an image is never paired with itself). Each cell has its own
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


def distinct_pairs(n_content: int, n_style: int, same_artist: bool) -> int:
    """How many (content, style) pairs a cell holds; within one artist an image is not paired with itself."""
    return n_content * (n_style - 1) if same_artist else n_content * n_style


def check_cells_hold(cells: list[tuple[str, str]], images: dict[str, list[int]], per_cell: int) -> None:
    """Refuse ``per_cell`` if the smallest cell holds fewer distinct pairs, naming that cell and what it holds."""
    sizes = {(s, c): distinct_pairs(len(images[c]), len(images[s]), s == c) for s, c in cells}
    (style, content), most = min(sizes.items(), key=lambda kv: kv[1])
    if most >= per_cell:
        return
    n_content, n_style = len(images[content]), len(images[style])
    if style == content:
        held = f"{n_content} image{'s' * (n_content != 1)} of one artist, none paired with itself"
    else:
        held = f"{n_content} content × {n_style} style image{'s' * (n_style != 1)}"
    count = f"only {most} distinct pair{'s' * (most != 1)}" if most else "no distinct pairs"
    fix = f"use --per-cell {most} or fewer" if most else "use --pairs cross-artist or a split with more images"
    raise ConfigError(f"--per-cell {per_cell}: cell {style}→{content} has {count} ({held}); {fix}")


def cell_pairs(content: list[int], style: list[int], same: bool, rng: random.Random, k: int) -> list[tuple[int, int]]:
    """``k`` distinct (content, style) pairs drawn without replacement, by index, so a cell of a million
    possible pairs is never listed. ``same``: both lists are one artist's, and an image is not paired with itself."""
    width = len(style) - 1 if same else len(style)
    pairs = []
    for i in rng.sample(range(len(content) * width), k):
        c, s = divmod(i, width)
        if same and s >= c:
            s += 1  # index c is the content image itself: the style index skips over it
        pairs.append((content[c], style[s]))
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
