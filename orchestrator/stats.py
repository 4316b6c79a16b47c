"""Proportions with honest error bars, for the style-transfer attribution question.

When the style of artist A is painted onto a work of artist B, the classifier
names B (``content``), A (``style``) or someone else (``other``). A rate from a
few dozen images needs an interval: the Wilson score interval (Wilson 1927)
keeps its coverage near nominal for small n and for rates near 0 or 1, where
the textbook normal ("Wald") interval collapses to a point (Newcombe 1998,
Brown, Cai & DasGupta 2001).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

from core.errors import ConfigError

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal: a two-sided 95 % interval
OUTCOMES = ("content", "style", "other")


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (low, high) for ``successes`` out of ``n`` trials.

    Its bounds are the two proportions p at which the score test is exactly
    significant: (p_hat - p)^2 = z^2 p (1 - p) / n. With no trials nothing is
    known: (0.0, 1.0).
    """
    _count("successes", successes)
    _count("n", n)
    if successes > n:
        raise ConfigError(f"successes ({successes}) cannot exceed n ({n})")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise ConfigError(f"z must be a positive finite number, got {z!r}")
    if n == 0:
        return 0.0, 1.0
    failures = n - successes
    z2 = z * z
    # Written with successes and failures, not p_hat, so the radicand never goes negative.
    centre = successes + z2 / 2
    half = z * math.sqrt(successes * failures / n + z2 / 4)
    low = 0.0 if successes == 0 else max(0.0, (centre - half) / (n + z2))
    high = 1.0 if failures == 0 else min(1.0, (centre + half) / (n + z2))
    return low, high


def chance_levels(k: int) -> dict[str, float]:
    """What a classifier guessing uniformly among ``k`` artists scores: content 1/K, style 1/K, other (K-2)/K."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"chance levels need at least 2 artists, got {k!r}")
    return {"content": 1 / k, "style": 1 / k, "other": (k - 2) / k}


def cluster_bootstrap(
    outcomes: Sequence[str], clusters: Sequence[Hashable], resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile interval of each outcome's rate, resampling whole clusters with replacement.

    In a style batch one content image recurs across many pairs (and doses), so its
    stylizations are not independent trials: a classifier that finds one Monet easy
    names "Monet" for every pair built on it. Resampling content images, not
    stylizations (Davison & Hinkley 1997, sec. 3.8), keeps that dependence; each
    resample's rate is its hits over its stylizations, so clusters weigh by size as in
    the data. Seeded: the same rows, resamples and seed give the same interval.
    With no rows every interval is (0.0, 1.0); with one cluster it is the point estimate.
    """
    import numpy as np  # numpy only when an interval is asked for: the CLI's start-up stays lean

    if len(outcomes) != len(clusters):
        raise ConfigError(f"{len(outcomes)} outcomes but {len(clusters)} cluster keys")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ConfigError(f"resamples must be a positive int, got {resamples!r}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    unknown = sorted(set(outcomes) - set(OUTCOMES), key=str)
    if unknown:
        raise ConfigError(f"unknown outcome(s) {', '.join(map(repr, unknown))}; expected {', '.join(OUTCOMES)}")
    if not outcomes:
        return {o: (0.0, 1.0) for o in OUTCOMES}
    # Clusters in sorted order, not in row order: the interval depends on the rows, never on the order a
    # database returned them in (SQLite and PostgreSQL need not agree without an ORDER BY).
    index = {c: i for i, c in enumerate(sorted(set(clusters), key=str))}
    hits = np.zeros((len(index), len(OUTCOMES)))  # (clusters, outcomes)
    for outcome, cluster in zip(outcomes, clusters):
        hits[index[cluster], OUTCOMES.index(outcome)] += 1
    sizes = hits.sum(1)  # (clusters,)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(index), size=(resamples, len(index)))  # each row: one resample of clusters
    times = np.zeros((resamples, len(index)))
    np.add.at(times, (np.arange(resamples)[:, None], draws), 1)  # how often each cluster was drawn
    rates = (times @ hits) / (times @ sizes)[:, None]  # (resamples, outcomes)
    tail = (1 - level) / 2
    low, high = np.quantile(rates, [tail, 1 - tail], axis=0)
    return {o: (float(low[i]), float(high[i])) for i, o in enumerate(OUTCOMES)}
