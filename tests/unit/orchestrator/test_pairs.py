import pytest
from sqlalchemy import func, select

from core.errors import ConfigError
from core.settings import Settings
from db import jobs
from db.models import Dataset, Image, Job, Run, StyleBatch, StyleBatchPair
from orchestrator.jobs.pairs import sample_pairs
from orchestrator.lab import Lab
from tests.cli_run import assert_clean_exit, invoke
from worker.stylize_job import outcome

# 8 artists with 2 test images each: 56 cross-artist cells of 2 x 2 = 4 distinct pairs.
EIGHT = {a: [10 * i + 1, 10 * i + 2] for i, a in enumerate("ABCDEFGH")}


def test_cross_artist_pairs_cover_every_ordered_pair():
    by_artist = {"A": [1, 2], "B": [3, 4], "C": [5]}
    pairs = sample_pairs(by_artist, "cross-artist", 2, seed=0)
    artist = {i: a for a, ids in by_artist.items() for i in ids}
    cells = [(artist[s], artist[c]) for c, s in pairs]
    assert len(pairs) == 6 * 2 and sorted(set(cells)) == [(a, b) for a in "ABC" for b in "ABC" if a != b]
    assert pairs == sample_pairs(by_artist, "cross-artist", 2, seed=0)
    assert len(sample_pairs({"A": [1, 2], "B": [3, 4]}, "all", 2, seed=0)) == 4 * 2


def test_per_cell_draws_distinct_pairs():
    # Drawn with replacement, 5 of 4 possible per cell gave 172 distinct pairs of 280; now every pair is distinct.
    for per_cell in (1, 3, 4):
        pairs = sample_pairs(EIGHT, "cross-artist", per_cell, seed=7)
        assert len(pairs) == len(set(pairs)) == 56 * per_cell
    big = {"A": list(range(1000)), "B": list(range(1000, 2000))}  # a million pairs per cell, never listed
    assert len(set(sample_pairs(big, "cross-artist", 500, seed=0))) == 2 * 500


def test_a_cell_drawn_whole_holds_every_pair_once():
    pairs = sample_pairs(EIGHT, "cross-artist", 4, seed=3)
    assert {(c, s) for c, s in pairs if c in EIGHT["B"] and s in EIGHT["A"]} == {
        (c, s) for c in (11, 12) for s in (1, 2)
    }


def test_same_artist_cells_pair_an_image_with_itself_last():
    by_artist = {"A": [1, 2, 3], "B": [4, 5, 6]}
    pairs = sample_pairs(by_artist, "all", 6, seed=0)  # 3 x 2 pairs of two images within an artist: all of them
    assert len(pairs) == len(set(pairs)) == 4 * 6 and all(c != s for c, s in pairs)
    pairs = sample_pairs(by_artist, "all", 8, seed=0)  # then 2 of the 3 images with themselves
    same = [(c, s) for c, s in pairs if (c <= 3) == (s <= 3)]
    assert len(pairs) == len(set(pairs)) == 4 * 8 and sum(c == s for c, s in same) == 2 * 2
    # One image of an artist: its same-artist cell holds the one pair of it with itself.
    assert (5, 5) in sample_pairs({"A": [1, 2], "B": [3, 4], "C": [5]}, "all", 1, seed=0)


def test_cells_keep_their_own_stream():
    # Adding an artist adds cells; it does not reshuffle the pairs of the cells already there.
    two = sample_pairs({"A": [1, 2, 3], "B": [4, 5, 6]}, "cross-artist", 2, seed=1)
    three = sample_pairs({"A": [1, 2, 3], "B": [4, 5, 6], "C": [7, 8]}, "cross-artist", 2, seed=1)
    assert set(two) <= set(three)


def test_a_cell_smaller_than_per_cell_is_refused_in_one_line():
    with pytest.raises(ConfigError) as err:
        sample_pairs(EIGHT, "cross-artist", 5, seed=0)
    assert str(err.value) == (
        "--per-cell 5: cell A→B has only 4 distinct pairs (2 content × 2 style images); use --per-cell 4 or fewer"
    )
    # The smallest cell decides, whichever artist it is.
    with pytest.raises(ConfigError, match=r"cell A→C has only 2 distinct pairs \(1 content × 2 style images\)"):
        sample_pairs({"A": [1, 2], "B": [3, 4], "C": [5]}, "cross-artist", 3, seed=0)
    with pytest.raises(ConfigError, match=r"cell C→C has only 1 distinct pair \(1 image of one artist, each paired"):
        sample_pairs({"A": [1, 2], "B": [3, 4], "C": [5]}, "all", 2, seed=0)


def test_pair_errors():
    with pytest.raises(ConfigError, match="at least 2 artists"):
        sample_pairs({"A": [1]}, "all", 1, 0)
    with pytest.raises(ConfigError, match="--pairs"):
        sample_pairs({"A": [1], "B": [2]}, "random", 1, 0)


def test_outcomes():
    assert outcome("Monet", "Monet", "Dürer") == "content"
    assert outcome("Dürer", "Monet", "Dürer") == "style"
    assert outcome("Goya", "Monet", "Dürer") == "other"


def test_stylize_refuses_a_per_cell_no_cell_holds_and_writes_nothing(cli_env):
    lab = Lab(Settings.from_env(cli_env))
    try:
        with lab.sessions.begin() as s:
            ds = Dataset(name="two", root="/nowhere", format="folder", seed=0, split=[0.6, 0.2, 0.2], classes=["Degas"])
            s.add(ds)
            s.flush()
            s.add_all(
                Image(dataset_id=ds.id, path=f"{a}/{i}.png", label=a, split="test")
                for a in ("Degas", "Monet")
                for i in range(2)
            )
            job = jobs.create_job(s, "train", {"dataset_id": ds.id})
            job.status = "succeeded"
            run = Run(job_id=job.id, dataset_id=ds.id, arch="baseline-cnn", config={}, checkpoint_path="runs/1/b.st")
            s.add(run)
            s.flush()
            run_id = run.id
        args = ["stylize", "--dataset", "two", "--classifier", str(run_id), "--per-cell", "5"]
        r = invoke(args, cli_env)
        assert_clean_exit(r, 1)
        assert r.output.strip().splitlines() == [
            "Error: --per-cell 5: cell Degas→Monet has only 4 distinct pairs (2 content × 2 style images); "
            "use --per-cell 4 or fewer"
        ]
        with lab.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Job)) == 1  # the classifier's train job only
            assert s.scalar(select(func.count()).select_from(StyleBatch)) == 0
            assert s.scalar(select(func.count()).select_from(StyleBatchPair)) == 0
    finally:
        lab.close()
