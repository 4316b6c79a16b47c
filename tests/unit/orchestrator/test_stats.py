import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from orchestrator.stats import OUTCOMES, Z95, chance_levels, cluster_bootstrap, wilson_interval


def score_bounds(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Reference: the Wilson bounds are the roots in p of the score equation (p_hat - p)^2 = z^2 p (1 - p) / n,

    i.e. (1 + z^2/n) p^2 - (2 p_hat + z^2/n) p + p_hat^2 = 0, solved here with the plain quadratic formula
    (exact rationals up to the square root), independently of the closed form in orchestrator.stats.
    """
    p, z2 = Fraction(k, n), Fraction(z) ** 2
    a, b, c = 1 + z2 / n, -(2 * p + z2 / n), p * p
    root = math.sqrt(b * b - 4 * a * c)
    return float((-b - Fraction(root)) / (2 * a)), float((-b + Fraction(root)) / (2 * a))


@pytest.mark.parametrize(
    "k,n,expected",
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of seven
        # methods", Stat Med 17:857-872, Table I, method 3 (score interval without continuity correction).
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_published_values(k, n, expected):
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == expected


@pytest.mark.parametrize("k,n", [(0, 10), (5, 10), (10, 10), (81, 263), (1, 1), (3, 7), (999, 1000)])
def test_matches_the_roots_of_the_score_equation(k, n):
    assert wilson_interval(k, n) == pytest.approx(score_bounds(k, n), abs=1e-12)


def test_textbook_small_samples():
    # Closed forms at the edges: 0/n gives (0, z^2/(n+z^2)), n/n gives (n/(n+z^2), 1); 5/10 is symmetric about 1/2.
    z2 = Z95**2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), 1.0)
    lo, hi = wilson_interval(5, 10)
    assert lo + hi == pytest.approx(1.0) and (round(lo, 4), round(hi, 4)) == (0.2366, 0.7634)
    assert (round(wilson_interval(0, 10)[1], 4), round(wilson_interval(10, 10)[0], 4)) == (0.2775, 0.7225)


def test_no_trials_knows_nothing():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_other_z():
    # z = 1 (about 68 %) is narrower than 95 %, and still solves the score equation.
    assert wilson_interval(5, 10, z=1.0) == pytest.approx(score_bounds(5, 10, 1.0), abs=1e-12)
    lo1, hi1 = wilson_interval(5, 10, z=1.0)
    lo, hi = wilson_interval(5, 10)
    assert lo < lo1 < hi1 < hi


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((5, 3), ConfigError, "cannot exceed"),
        ((-1, 3), ConfigError, "successes must not be negative"),
        ((0, -1), ConfigError, "n must not be negative"),
        ((1.0, 3), TypeError, "successes must be an int"),
        ((1, 3.5), TypeError, "n must be an int"),
        ((True, 3), TypeError, "successes must be an int"),
        ((1, 3, 0.0), ConfigError, "z must be a positive"),
        ((1, 3, float("nan")), ConfigError, "z must be a positive"),
    ],
)
def test_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        wilson_interval(*args)


@given(st.integers(1, 10_000), st.data())
def test_interval_properties(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert lo < hi
    assert (lo == 0.0) == (k == 0) and (hi == 1.0) == (k == n)
    # The same proportion from more trials gives a strictly narrower interval.
    lo2, hi2 = wilson_interval(2 * k, 2 * n)
    assert hi2 - lo2 < hi - lo
    # Failures mirror successes.
    mlo, mhi = wilson_interval(n - k, n)
    assert (mlo, mhi) == pytest.approx((1 - hi, 1 - lo), abs=1e-12)


@given(st.integers(1, 2000), st.data())
def test_bounds_solve_the_score_equation(n, data):
    k = data.draw(st.integers(0, n))
    p_hat = k / n
    for p in wilson_interval(k, n):
        assert (p_hat - p) ** 2 == pytest.approx(Z95**2 * p * (1 - p) / n, abs=1e-12)


# ---------------------------------------------------------------------------- design-respecting intervals


def test_chance_levels():
    assert chance_levels(10) == {"content": 0.1, "style": 0.1, "other": 0.8}
    assert chance_levels(2)["other"] == 0.0
    with pytest.raises(ConfigError, match="at least 2 artists"):
        chance_levels(1)


def test_cluster_bootstrap_is_reproducible_for_a_seed():
    outcomes = ["style", "content", "other", "style"] * 10
    clusters = [i // 3 for i in range(40)]
    a = cluster_bootstrap(outcomes, clusters, resamples=500, seed=7)
    assert a == cluster_bootstrap(outcomes, clusters, resamples=500, seed=7)
    assert a != cluster_bootstrap(outcomes, clusters, resamples=500, seed=8)
    for o in OUTCOMES:
        lo, hi = a[o]
        rate = outcomes.count(o) / len(outcomes)
        assert 0 <= lo <= rate <= hi <= 1


def test_cluster_bootstrap_is_wider_than_wilson_when_one_content_image_recurs():
    # 8 content images, each reused in 10 pairs; whether the classifier is fooled depends on the image
    # (the same answer across its 10 pairs): 80 stylizations, but only 8 independent draws.
    outcomes, clusters = [], []
    for image in range(8):
        answer = "style" if image % 2 else "content"
        outcomes += [answer] * 10
        clusters += [image] * 10
    boot = cluster_bootstrap(outcomes, clusters, resamples=2000, seed=0)
    wilson = wilson_interval(outcomes.count("style"), len(outcomes))
    assert boot["style"][1] - boot["style"][0] > 1.5 * (wilson[1] - wilson[0])
    # Independent trials (one stylization per image) give about Wilson's width: the bootstrap is not just wide.
    solo = cluster_bootstrap(outcomes, list(range(80)), resamples=2000, seed=0)
    assert solo["style"][1] - solo["style"][0] < 1.2 * (wilson[1] - wilson[0])


def test_cluster_bootstrap_edges():
    assert cluster_bootstrap([], []) == {o: (0.0, 1.0) for o in OUTCOMES}
    one = cluster_bootstrap(["style", "content"], ["a", "a"], resamples=50)
    assert one["style"] == (0.5, 0.5)
    with pytest.raises(ConfigError, match="unknown outcome"):
        cluster_bootstrap(["same"], [1])
    with pytest.raises(ConfigError, match="2 outcomes but 1 cluster"):
        cluster_bootstrap(["style", "style"], [1])


def test_the_bootstrap_interval_does_not_depend_on_row_order():
    # A database returns rows in no promised order: the same rows must give the same interval.
    rows = [("content", 1), ("style", 1), ("other", 2), ("style", 3), ("content", 3), ("other", 4), ("style", 5)]
    reordered = rows[3:] + rows[:3]
    first = cluster_bootstrap([o for o, _ in rows], [c for _, c in rows], resamples=500, seed=3)
    second = cluster_bootstrap([o for o, _ in reordered], [c for _, c in reordered], resamples=500, seed=3)
    assert first == second
