"""Synthetic paintings: deterministic, varied within an artist, distinct between artists."""

import time
import unicodedata

import numpy as np
import pytest
from PIL import Image

from core.errors import ConfigError
from corpus.imageio import decode_all
from corpus.synth import write_synthetic


def files_of(root, name):
    return sorted((root / name).iterdir())


def test_folders_counts_and_unicode_names(tmp_path):
    names = write_synthetic(tmp_path, artists=3, per_artist=4, seed=0, size=32)
    assert len(names) == len(set(names)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert any(not n.isascii() for n in names)  # unicode must survive the whole way
    assert all(unicodedata.is_normalized("NFC", n) for n in names)
    for n in names:
        files = files_of(tmp_path, n)
        assert [f.suffix for f in files] == [".jpg"] * 4


def test_deterministic_for_a_seed(tmp_path):
    a = write_synthetic(tmp_path / "a", artists=2, per_artist=3, seed=7, size=24)
    b = write_synthetic(tmp_path / "b", artists=2, per_artist=3, seed=7, size=24)
    c = write_synthetic(tmp_path / "c", artists=2, per_artist=3, seed=8, size=24)
    assert a == b == c  # names do not depend on the seed
    for n in a:
        bytes_a = [f.read_bytes() for f in files_of(tmp_path / "a", n)]
        assert bytes_a == [f.read_bytes() for f in files_of(tmp_path / "b", n)]
        assert bytes_a != [f.read_bytes() for f in files_of(tmp_path / "c", n)]


def test_more_paintings_keep_the_first_ones(tmp_path):
    names = write_synthetic(tmp_path / "few", artists=2, per_artist=2, seed=1, size=24)
    write_synthetic(tmp_path / "many", artists=2, per_artist=5, seed=1, size=24)
    for n in names:
        assert [f.read_bytes() for f in files_of(tmp_path / "few", n)] == [
            f.read_bytes() for f in files_of(tmp_path / "many", n)[:2]
        ]


def test_sizes_and_aspect_ratios_vary_around_size(tmp_path):
    names = write_synthetic(tmp_path, artists=2, per_artist=12, seed=0, size=40)
    sizes = set()
    for n in names:
        for f in files_of(tmp_path, n):
            with Image.open(f) as im:
                sizes.add(im.size)
    assert len(sizes) > 6
    assert all(max(s) == 40 and min(s) >= 16 for s in sizes)
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)  # landscape and portrait


def test_artists_differ_in_colour_and_are_told_apart_at_32px(tmp_path):
    names = write_synthetic(tmp_path, artists=6, per_artist=8, seed=3, size=48)
    paths = [f"{n}/{f.name}" for n in names for f in files_of(tmp_path, n)]
    y = np.repeat(np.arange(6), 8)
    x = decode_all(tmp_path, paths, 32, threads=2).astype(np.float32)  # (48, 3, 32, 32)
    means = np.stack([x[y == k].mean((0, 2, 3)) for k in range(6)])
    gaps = np.abs(means[:, None] - means[None]).max(-1)[np.triu_indices(6, 1)]
    assert gaps.min() > 10  # every pair of artists differs in mean colour

    # A nearest-centroid classifier on colour statistics, trained on half the paintings:
    # a floor for what a CNN learns in an epoch or two.
    feats = np.concatenate([x.mean((2, 3)), x.std((2, 3))], 1)
    train = np.arange(len(y)) % 2 == 0
    centroids = np.stack([feats[train & (y == k)].mean(0) for k in range(6)])
    pred = ((feats[~train, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == y[~train]).mean() >= 0.8  # chance is 1/6


def test_within_an_artist_paintings_differ(tmp_path):
    (name, _) = write_synthetic(tmp_path, artists=2, per_artist=3, seed=0, size=32)
    arrays = [
        np.asarray(Image.open(f).convert("RGB").resize((32, 32)), dtype=np.float32) for f in files_of(tmp_path, name)
    ]
    assert min(np.abs(a - b).mean() for i, a in enumerate(arrays) for b in arrays[i + 1 :]) > 3


def test_fast_enough_for_the_demo(tmp_path):
    t0 = time.perf_counter()
    write_synthetic(tmp_path, artists=6, per_artist=40, seed=0, size=96)
    assert time.perf_counter() - t0 < 10  # ~0.5 s here; per-pixel Python loops would take minutes


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(artists=1, per_artist=2), "--artists"),
        (dict(artists=2, per_artist=0), "--per-artist"),
        (dict(artists=2, per_artist=2, size=15), "--size"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        write_synthetic(tmp_path, **kwargs)


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        write_synthetic(tmp_path / "f", artists=2, per_artist=1)
