import pytest

from core.errors import ConfigError
from orchestrator.jobs.pairs import sample_pairs
from worker.stylize_job import outcome


def test_cross_artist_pairs_cover_every_ordered_pair():
    by_artist = {"A": [1, 2], "B": [3, 4], "C": [5]}
    pairs = sample_pairs(by_artist, "cross-artist", 2, seed=0)
    artist = {i: a for a, ids in by_artist.items() for i in ids}
    cells = [(artist[s], artist[c]) for c, s in pairs]
    assert len(pairs) == 6 * 2 and sorted(set(cells)) == [(a, b) for a in "ABC" for b in "ABC" if a != b]
    assert pairs == sample_pairs(by_artist, "cross-artist", 2, seed=0)
    assert len(sample_pairs(by_artist, "all", 1, seed=0)) == 9


def test_pair_errors():
    with pytest.raises(ConfigError, match="at least 2 artists"):
        sample_pairs({"A": [1]}, "all", 1, 0)
    with pytest.raises(ConfigError, match="--pairs"):
        sample_pairs({"A": [1], "B": [2]}, "random", 1, 0)


def test_outcomes():
    assert outcome("Monet", "Monet", "Dürer") == "content"
    assert outcome("Dürer", "Monet", "Dürer") == "style"
    assert outcome("Goya", "Monet", "Dürer") == "other"
