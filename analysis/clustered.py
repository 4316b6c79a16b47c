"""Two-way cluster-robust intervals: one method for every rate and contrast of the study.

Content images and style images both recur across pairs (and every pair recurs across doses), so a batch's
stylizations are neither independent nor nested in one kind of cluster. Every rate is the intercept of a
linear probability model, every contrast a difference of arm means, fitted by ordinary least squares with the
two-way cluster-robust covariance of Cameron, Gelbach & Miller (2011): V = V_content + V_style − V_both,
each with its small-sample correction, and intervals from Student's t with G − 1 degrees of freedom, G the
smaller number of clusters (statsmodels ``cov_type="cluster"`` with two group columns). Strata with fewer than
``MIN_CLUSTERS`` distinct content or style images get a marked interval (``note`` says so; the sandwich needs
many clusters and runs narrow with few), and none with fewer than 2 of either; a stratum whose answers all agree
gets none (a zero-width interval would claim certainty that a handful of images cannot give).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_CLUSTERS = 10
LEVEL = 0.95
METHOD = (
    "95 % intervals: linear probability model, two-way cluster-robust covariance over content images × style "
    f"images (Cameron, Gelbach & Miller 2011; statsmodels), t with G−1 df; none where a stratum has fewer than "
    f"2 distinct content or style images or every answer agrees; marked * (unreliable, likely too narrow) "
    f"with fewer than {MIN_CLUSTERS}"
)
METHOD_SHORT = "two-way cluster-robust (content image × style image), 95 %"


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float  # NaN: no interval (see note)
    high: float
    note: str  # '' when the interval stands; otherwise why there is none


FEW = "few images"  # how a marked interval's note starts


def few_clusters(content_ids, style_ids) -> str:
    c, s = len(set(content_ids)), len(set(style_ids))
    if min(c, s) < 2:
        return f"{c} content and {s} style images: no interval"
    if min(c, s) < MIN_CLUSTERS:
        return f"{FEW} ({c} content, {s} style < {MIN_CLUSTERS}): interval marked, unreliable"
    return ""


def stands(note: str) -> bool:
    """Whether a stratum with this ``few_clusters`` note is fitted for an interval at all (marked or not)."""
    return not note or note.startswith(FEW)


def groups_of(content_ids, style_ids) -> np.ndarray:
    """The two cluster columns as integer codes (statsmodels wants integers)."""
    return np.column_stack([pd.factorize(pd.Series(list(content_ids)))[0], pd.factorize(pd.Series(list(style_ids)))[0]])


def fit_ols(y: np.ndarray, X: np.ndarray, content_ids, style_ids, weights: np.ndarray | None = None):
    """OLS (WLS with ``weights``) with two-way cluster-robust covariance; None when it cannot be estimated."""
    import statsmodels.api as sm

    model = sm.WLS(y, X, weights=weights) if weights is not None else sm.OLS(y, X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate stratum is reported by its note, not by a warning
        try:
            return model.fit(cov_type="cluster", cov_kwds={"groups": groups_of(content_ids, style_ids)}, use_t=True)
        except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
            return None


def interval(value: float, se: float, df: float, note: str) -> Estimate:
    from scipy import stats

    if note:
        return Estimate(value, float("nan"), float("nan"), note)
    if not np.isfinite(se) or se <= 0:
        return Estimate(
            value,
            float("nan"),
            float("nan"),
            "every answer agrees (or the variance estimate is not positive): no interval",
        )
    half = stats.t.ppf(0.5 + LEVEL / 2, df) * se
    return Estimate(value, value - half, value + half, "")


def rate(y, content_ids, style_ids, weights=None) -> Estimate:
    """The mean of the 0/1 answers ``y`` (weighted: ``weights``) with its two-way clustered interval, clipped to
    [0, 1] (a rate cannot leave it)."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), "no stylizations")
    w = None if weights is None else np.asarray(weights, dtype=float)
    value = float(np.average(y, weights=w))
    note = few_clusters(content_ids, style_ids)
    if y.min() == y.max():
        return interval(value, 0.0, 1, note if not stands(note) else "")
    res = fit_ols(y, np.ones((len(y), 1)), content_ids, style_ids, w) if stands(note) else None
    if res is None:
        return interval(value, float("nan"), 1, note if not stands(note) else "the fit failed: no interval")
    var = float(np.asarray(res.cov_params())[0, 0])  # V_c + V_s − V_cs can come out negative in a small stratum
    e = interval(value, float(np.sqrt(var)) if var > 0 else float("nan"), float(res.df_resid_inference), note)
    return Estimate(e.value, max(0.0, e.low), min(1.0, e.high), e.note)


def contrasts(y, arms, content_ids, style_ids, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Estimate]:
    """mean(y | arm a) − mean(y | arm b) for each (a, b) in ``pairs``, from one fit of y on the arms' indicators
    with the two-way clustered covariance (so the rows of one pair across arms are correlated, as they are)."""
    y = np.asarray(y, dtype=float)
    arms = pd.Series(list(arms))
    names = sorted(set(arms), key=str)
    X = np.column_stack([(arms == a).to_numpy(dtype=float) for a in names])
    means = {a: float(y[(arms == a).to_numpy()].mean()) for a in names}
    note = few_clusters(content_ids, style_ids)
    res = fit_ols(y, X, content_ids, style_ids) if stands(note) else None
    out = {}
    for a, b in pairs:
        value = means[a] - means[b]
        if res is None:
            out[(a, b)] = interval(value, float("nan"), 1, note if not stands(note) else "the fit failed: no interval")
            continue
        L = np.zeros(len(names))
        L[names.index(a)], L[names.index(b)] = 1.0, -1.0
        var = float(L @ np.asarray(res.cov_params()) @ L)
        se = float(np.sqrt(var)) if var > 0 else float("nan")
        out[(a, b)] = interval(value, se, float(res.df_resid_inference), note)
    return out
