"""The intervals hold at a real study's size: 8 artists × 2–3 test images, every image a content image of some pairs
and a style image of others (tests/unit/analysis/study.py), with each image's effect shared by its two roles and
with independent roles. Seeded simulations; each bound is wide enough for the Monte Carlo error of its count (the
counts are pooled over strata of one batch, which are correlated, so the bands are the issue's 92–98 %, not the
binomial band of independent draws).
"""

from __future__ import annotations

import numpy as np
import pytest

import analysis
from analysis import clustered, doseresponse
from tests.unit.analysis import study

TRUTH = study.truth()
# (test images per artist, pairs per style artist, one effect per image for both roles): docs/findings.md's batch
# (2 images, 2 pairs per style artist: 16 pairs), a fuller batch (3 images, 7 pairs: 56 pairs) and between.
DESIGNS = [(2, 2, True), (2, 2, False), (2, 6, True), (3, 7, True), (3, 7, False)]


def _rates_and_contrasts(records) -> tuple[list[bool], list[bool]]:
    rates, diffs = [], []
    for d in (0.1, 10.0, 1000.0):
        part = records[records["level"] == d]
        for o in ("style", "content"):
            e = clustered.rate(part["outcome"] == o, part["content_image_id"], part["style_image_id"])
            assert np.isfinite(e.low), e  # every whole-batch stratum gets an interval, all-agreeing ones too
            rates.append(e.low <= TRUTH[d][o] <= e.high)
    rows = records[records["level"].isin([0.0, 1.0, 10.0, 1000.0])]
    wanted = [(str(d), "0.0") for d in (1.0, 10.0, 1000.0)]
    est = clustered.contrasts(
        rows["outcome"] == "style", rows["level"].map(str), rows["content_image_id"], rows["style_image_id"], wanted
    )
    for (a, b), e in est.items():  # a difference with no interval (no variation) counts as a miss
        diffs.append(bool(e.low <= TRUTH[float(a)]["style"] - TRUTH[float(b)]["style"] <= e.high))
    return rates, diffs


@pytest.mark.parametrize("images,per_style,shared", DESIGNS)
def test_rates_and_contrasts_cover_92_to_98_percent_at_a_real_study_size(images, per_style, shared):
    rates, diffs = [], []
    for seed in range(250):
        r, d = _rates_and_contrasts(study.batch(seed, images=images, per_style=per_style, shared=shared))
        rates += r
        diffs += d
    assert 0.92 <= np.mean(rates) <= 0.98, (np.mean(rates), len(rates))
    assert 0.92 <= np.mean(diffs) <= 0.98, (np.mean(diffs), len(diffs))


@pytest.mark.parametrize("images,per_style,shared", [(2, 2, True), (3, 7, True)])
def test_d50_intervals_cover_at_a_real_study_size(images, per_style, shared):
    """Fieller's interval on the jackknife covariance covers the true d50 (10) on the stored probabilities and on
    the named answer; where the slope is not established the interval is unbounded and counts as covering."""
    hits, bounded = {"named": [], "probs": []}, {"named": 0, "probs": 0}
    for seed in range(150):
        fits = analysis.dose_response(
            study.batch(seed, images=images, per_style=per_style, shared=shared), "all", "none"
        )
        for fit in fits.itertuples():
            if np.isfinite(fit.d50_low):
                bounded[fit.outcome] += 1
                hits[fit.outcome].append(fit.d50_low <= 10.0 <= fit.d50_high)
            else:
                assert "unbounded" in fit.note or "carries the fit" in fit.note, fit.note
                hits[fit.outcome].append(True)
    for outcome in ("named", "probs"):
        assert 0.92 <= np.mean(hits[outcome]) <= 0.99, (outcome, np.mean(hits[outcome]))
    assert bounded["probs"] >= 120  # the probabilities' d50 mostly gets a finite interval: it says something


def test_a_style_artists_rate_gets_a_real_interval_and_full_range_only_when_the_method_gives_it():
    """Per style artist (2 style images, 7 pairs each): every stratum with both gets an interval, they cover, and one
    is [0, 1] only when value ± t·se itself reaches past both ends, never because an interval was dropped."""
    hits, full, real = [], 0, 0
    for seed in range(120):
        part = study.batch(seed, images=2, per_style=7)
        table = analysis.attribution_table(part[part["level"] == 10.0], by="style-artist", condition="none")
        for row in table[table["treatment"] == "dose"].itertuples():
            if row.style_images < 2:  # all 7 pairs drew one of the artist's two images: nothing to vary, no interval
                assert np.isnan(row.style_low) and "no interval" in row.style_note
                continue
            assert np.isfinite(row.style_low) and row.style_note.startswith("few images"), row.style_note
            hits.append(row.style_low <= TRUTH[10.0]["style"] <= row.style_high)
            if (row.style_low, row.style_high) == (0.0, 1.0):
                full += 1
            else:
                real += 1
    assert np.mean(hits) >= 0.92, np.mean(hits)
    assert real > full  # most per-artist intervals say something at this size


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(0).uniform(0, 0.2, 30)
    assert np.allclose(clustered.holm(p), multipletests(p, method="holm")[1])


def test_fieller_is_unbounded_when_the_slope_is_not_established_and_near_the_delta_method_when_it_is():
    cov = np.array([[0.04, 0.0], [0.0, 0.01]])
    assert np.isnan(doseresponse.fieller(1.0, 0.15, cov, 2.0)[0])  # slope 0.15 ± 0.2: holds 0
    low, high = doseresponse.fieller(-2.0, 1.0, cov, 2.0)  # log d50 = 2; delta method: 2 ± 2·0.283
    assert low < 2 < high and abs((high - low) - 4 * np.sqrt(0.04 + 4 * 0.01)) < 0.1
