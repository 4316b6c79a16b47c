"""bench/answers.py's pieces that decide its verdict: the threshold, the pairs it draws and the agreement."""

import torch

import analysis
from bench import answers


def test_the_near_tie_threshold_is_the_studys():
    assert answers.NEAR_TIE == analysis.NEAR_TIE


def test_pairs_are_cross_artist_and_every_artist_lends_its_style():
    classes = ["a", "b", "c"]
    by_artist = {"a": [0, 1], "b": [2, 3], "c": [4, 5]}
    artist = {i: a for a, ids in by_artist.items() for i in ids}
    pairs = answers.choose_pairs(classes, by_artist, 6)
    assert all(artist[c] != artist[s] for c, s in pairs)
    assert {artist[s] for _, s in pairs} == set(classes) and len(set(pairs)) == 6  # no pair twice


def test_agreement_counts_the_same_answers_overall_and_among_the_decisive():
    got = answers.agreement(["a", "b", "c", "a"], ["a", "c", "c", "b"], torch.tensor([True, True, False, False]))
    assert got == {"same": 2, "of": 4, "share": 0.5, "decisive_same": 1, "decisive": 2}


def test_each_bf16_candidate_is_judged_against_the_fp32_reference_and_its_floor(tmp_path):
    import argparse
    import json

    answers.pack(tmp_path / "pack", None, None, 3, 32)
    args = argparse.Namespace(
        pack=tmp_path / "pack", cpu_bf16=False, doses="1", pairs=2, size=32, steps=2, batch=2,
        optimizer="lbfgs,lbfgs-onepass", reference_optimizer="lbfgs", json=tmp_path / "a.json",
    )  # fmt: skip
    figures = answers.run(args)
    assert json.loads(args.json.read_text()) == json.loads(json.dumps(figures))  # the JSON is the last state
    floor = figures["fp32_vs_other_start"]
    assert figures["fp32"]["optimizer"] == figures["fp32_other_start"]["optimizer"] == "lbfgs"
    for name, optimizer in (("bf16 lbfgs", "lbfgs"), ("bf16 lbfgs-onepass", "lbfgs-onepass")):
        run = figures[name]
        assert run["optimizer"] == optimizer and len(run["answers"]) == 2
        vs = run["vs_fp32"]
        assert vs["same"] == sum(a == b for a, b in zip(run["answers"], figures["fp32"]["answers"]))
        assert run["holds"] == (vs["same"] >= floor["same"] and vs["decisive_same"] == vs["decisive"])
