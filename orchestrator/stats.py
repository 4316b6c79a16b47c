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
from typing import Any

from worker.ml.errors import ConfigError

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


def three_way_split(counts: dict[str, int]) -> dict[str, dict[str, float | int]]:
    """Rate and Wilson 95 % interval of each outcome, ``content``, ``style`` and ``other``.

    ``counts`` maps outcomes to how many stylized images the classifier gave
    that answer; a missing outcome counts 0, an unknown one is an error. Each
    result is ``{"count", "n", "rate", "low", "high"}`` where n is the total.
    With n = 0 every rate is 0.0 and every interval (0.0, 1.0). The intervals
    are marginal, one per outcome, not a joint region for the three rates.
    """
    if not isinstance(counts, dict):
        raise TypeError(f"counts must be a dict, got {type(counts).__name__}")
    unknown = sorted(set(counts) - set(OUTCOMES), key=str)
    if unknown:
        raise ConfigError(f"unknown outcome(s) {', '.join(map(repr, unknown))}; expected {', '.join(OUTCOMES)}")
    k = {outcome: _count(f"count of {outcome!r}", counts.get(outcome, 0)) for outcome in OUTCOMES}
    n = sum(k.values())
    result: dict[str, dict[str, float | int]] = {}
    for outcome in OUTCOMES:
        low, high = wilson_interval(k[outcome], n)
        result[outcome] = {"count": k[outcome], "n": n, "rate": k[outcome] / n if n else 0.0, "low": low, "high": high}
    return result
