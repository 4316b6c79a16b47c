"""Choosing (content, style) pairs for a style batch. Pure, seeded."""

from __future__ import annotations

import csv
import random
from pathlib import Path

from core.errors import ConfigError

MODES = ("cross-artist", "all")


def sample_pairs(by_artist: dict[str, list[int]], mode: str, per_cell: int, seed: int) -> list[tuple[int, int]]:
    """For every ordered (style artist A, content artist B), ``per_cell`` random (content, style) image pairs.

    ``cross-artist`` skips A == B; ``all`` keeps it. Each cell has its own
    random stream, so adding an artist does not reshuffle the others' pairs.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown --pairs {mode!r}: give cross-artist, all or a CSV file")
    if per_cell < 1:
        raise ConfigError(f"--per-cell must be at least 1, got {per_cell}")
    artists = sorted(a for a, imgs in by_artist.items() if imgs)
    if len(artists) < 2:
        raise ConfigError("style transfer between artists needs images of at least 2 artists in the chosen split")
    pairs = []
    for style_artist in artists:
        for content_artist in artists:
            if mode == "cross-artist" and style_artist == content_artist:
                continue
            rng = random.Random(f"{seed}:{style_artist}:{content_artist}")
            for _ in range(per_cell):
                content = rng.choice(by_artist[content_artist])
                style = rng.choice([i for i in by_artist[style_artist] if i != content] or by_artist[style_artist])
                pairs.append((content, style))
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
