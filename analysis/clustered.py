"""Intervals over images: one method for every rate, contrast and d50 of the study.

A batch reuses each image in two roles: a test painting is the content image of some pairs and the style image
of others, and every pair recurs at every dose. Two stylizations are therefore dependent whenever they share an
image, in either role (dyadic dependence; Cameron & Miller 2014, "Robust inference for dyadic data"). A real
batch has two or three test images per artist, so a stratum holds a handful of images, and the sandwich
estimators made for many clusters run narrow there (two-way CR1 covered 84–88 % in our simulations at that size).

The method is a jackknife over images. For every image g of the stratum the estimate is recomputed with every
stylization that uses g, as content or as style, removed: V_images = (G − 1)/G · Σ (θ₍g₎ − θ̄)² (Efron & Stein 1981;
for the two-sample U-statistics that a mean over (content, style) pairs is, Arvesen 1969). Deleting an image removes
both of its roles at once, so the dependence between an image's two roles is counted. It also counts each pair's own
variation (its start, its Bernoulli draw) twice, once with each of its two images; the same jackknife over pairs,
V_pairs, estimates that variation. Removing it whole (V_images − V_pairs, the jackknife form of the dyadic-robust
sandwich of Fafchamps & Gubert 2007) runs narrow with a handful of images: 90–94 % in our simulation at a real
study's size; removing none runs wide on contrasts of the same pairs, where the image effects cancel and the pairs'
variation is all there is: 98–99.5 %. We remove 0.65 of it (``PAIR_SHARE``): V = V_images − 0.65 · V_pairs covered
94–97.6 % across the designs simulated (half of it: 95–98.3 %). That share is an empirical choice, not a theorem,
checked by ``tests/unit/analysis/test_coverage.py`` at a real study's size, with each image's effect shared by its
two roles and with independent roles.

The interval is θ ± t · √V with G − 1 degrees of freedom, G the stratum's distinct images (both roles together).
Satterthwaite degrees of freedom from the images' shares of the rows, which put a style artist's stratum of two
style images near 2, made most of those strata's intervals [0, 1] while they covered 100 %. Rates are clipped to [0,
1], differences to [−1, 1].

No library implements a jackknife over dyadic clusters (statsmodels, pyfixest and wildboottest cluster on one or
two *separate* columns, never "either of two columns"), so the deletions and their degrees of freedom are written here; every fit
inside it is pandas', numpy's or statsmodels'. The one assumption left: images are independent draws of their
artists' work, and stylizations that share no image are independent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

LEVEL = 0.95
PAIR_SHARE = 0.65  # how much of the pairs' jackknife variance to remove (module docstring: chosen by simulation)
MIN_CLUSTERS = 10  # fewer distinct content or style images than this: the interval is marked (it rests on few)
METHOD = (
    "95 % intervals (each on its own): jackknife over images (every stylization that uses an image, as content or "
    f"as style, removed together) less {PAIR_SHARE:g} of the jackknife over pairs, t with G − 1 df (G: the "
    "stratum's images); rates clipped to [0, 1], differences to [−1, 1]; a rate whose answers all agree: exact "
    "(Clopper–Pearson) over its images; none where a stratum has fewer than 2 distinct content or style images or a "
    f"difference leaves no variation; marked * where it rests on fewer than {MIN_CLUSTERS} content or style images"
)
METHOD_SHORT = "jackknife over images (either role), 95 %"


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float  # NaN: no interval (see note)
    high: float
    note: str  # '' when the interval stands unmarked; otherwise why it is marked or absent
    se: float = float("nan")
    df: float = float("nan")

    @property
    def p_value(self) -> float:
        """Two-sided p-value of value = 0 (used for differences and slopes)."""
        from scipy import stats

        if not (np.isfinite(self.se) and self.se > 0):
            return float("nan")
        return float(2 * stats.t.sf(abs(self.value) / self.se, self.df))


FEW = "few images"  # how a marked interval's note starts


def few_clusters(content_ids, style_ids) -> str:
    """Why a stratum's interval is absent ('… no interval') or marked ('few images …'), or '' when it stands."""
    c, s = len(set(content_ids)), len(set(style_ids))
    if min(c, s) < 2:
        return f"{c} content and {s} style images: no interval"
    if min(c, s) < MIN_CLUSTERS:
        return f"{FEW} ({c} content, {s} style < {MIN_CLUSTERS}): interval marked, it rests on few images"
    return ""


def stands(note: str) -> bool:
    """Whether a stratum with this ``few_clusters`` note gets an interval at all (marked or not)."""
    return not note or note.startswith(FEW)


def groups_of(content_ids, style_ids) -> np.ndarray:
    """The two image columns as integer codes: for a user's own two-way clustered model (statsmodels)."""
    return np.column_stack([pd.factorize(pd.Series(list(content_ids)))[0], pd.factorize(pd.Series(list(style_ids)))[0]])


def incidence(content_ids, style_ids) -> np.ndarray:
    """rows × images, 1 where the row's stylization uses the image in either role (one code space for both)."""
    codes, _ = pd.factorize(pd.Series([*content_ids, *style_ids], dtype=object))
    n = len(codes) // 2
    M = np.zeros((n, codes.max() + 1 if n else 0))
    M[np.arange(n), codes[:n]] = 1.0
    M[np.arange(n), codes[n:]] = 1.0
    return M


def pair_incidence(content_ids, style_ids) -> np.ndarray:
    """rows × pairs, 1 where the row is a stylization of that (content image, style image) pair."""
    codes, _ = pd.factorize(pd.Series([f"{c}|{s}" for c, s in zip(content_ids, style_ids)]))
    P = np.zeros((len(codes), codes.max() + 1 if len(codes) else 0))
    P[np.arange(len(codes)), codes] = 1.0
    return P


def images_df(M: np.ndarray) -> float:
    """The t quantile's degrees of freedom: G − 1, G the distinct images of the stratum (module docstring)."""
    return float(M.shape[1] - 1)


def jackknife_var(leave_out: np.ndarray) -> np.ndarray:
    """(G − 1)/G · Σ (θ₍g₎ − θ̄)(θ₍g₎ − θ̄)ᵀ over the G leave-one-out estimates (rows of ``leave_out``)."""
    T = np.asarray(leave_out, dtype=float).reshape(len(leave_out), -1)
    D = T - T.mean(axis=0)
    return (len(T) - 1) / len(T) * D.T @ D


def dyadic_var(by_image: np.ndarray, by_pair: np.ndarray) -> np.ndarray:
    """V_images − PAIR_SHARE · V_pairs (module docstring: each pair's own variation, counted twice by V_images).
    When that is not positive (definite) the images show no variation of their own beyond their pairs', and the
    pairs' jackknife, V_pairs, is the estimate."""
    pairs = jackknife_var(by_pair)
    v = jackknife_var(by_image) - PAIR_SHARE * pairs
    return v if np.all(np.linalg.eigvalsh(v) > 0) else pairs


def _se(var: np.ndarray) -> float:
    v = float(np.asarray(var).reshape(-1)[0])
    return float(np.sqrt(v)) if v > 0 else float("nan")


def interval(value: float, se: float, df: float, note: str, bounds=(-np.inf, np.inf)) -> Estimate:
    """value ± t(df)·se clipped to ``bounds``, or no interval (NaN) with the reason in ``note``."""
    from scipy import stats

    if not stands(note):
        return Estimate(value, float("nan"), float("nan"), note)
    if not (np.isfinite(se) and se > 0):
        why = "the answers leave no variation across images: no interval"
        return Estimate(value, float("nan"), float("nan"), why)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    low, high = max(bounds[0], value - half), min(bounds[1], value + half)
    return Estimate(value, low, high, note, se, df)


def _leave_one_out_means(y: np.ndarray, w: np.ndarray, M: np.ndarray) -> np.ndarray | None:
    """The weighted mean of y with each image's rows removed, per image; None when removing one empties it."""
    left = w.sum() - w @ M
    if np.any(left <= 0):
        return None
    return ((w * y).sum() - (w * y) @ M) / left


def agreeing(value: float, content_ids, style_ids, note: str) -> Estimate:
    """A rate whose answers all agree (0 or 1) leaves the jackknife nothing to vary. Its interval is then the exact
    (Clopper–Pearson) one with n = the smaller number of distinct content or style images: images are the
    independent draws, the answers within an image are not, so counting stylizations would claim too much."""
    from scipy import stats

    n = min(len(set(content_ids)), len(set(style_ids)))
    ci = stats.binomtest(int(round(value * n)), n).proportion_ci(LEVEL, method="exact")
    why = "every answer agrees: exact interval over the images"
    return Estimate(value, float(ci.low), float(ci.high), f"{note}; {why}" if note else why)


def rate(y, content_ids, style_ids, weights=None) -> Estimate:
    """The (weighted) mean of the 0/1 answers ``y`` with its jackknife interval, clipped to [0, 1]."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), "no stylizations")
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    value = float(np.average(y, weights=w))
    note = few_clusters(content_ids, style_ids)
    if stands(note) and y.min() == y.max():
        return agreeing(value, content_ids, style_ids, note)
    M = incidence(content_ids, style_ids)
    loo = _leave_one_out_means(y, w, M) if stands(note) else None
    if loo is None:
        return interval(value, float("nan"), 1, note if not stands(note) else "one image holds every row: no interval")
    by_pair = _leave_one_out_means(y, w, pair_incidence(content_ids, style_ids))
    if by_pair is None:  # one pair holds every row
        return interval(value, float("nan"), 1, "one pair holds every row: no interval")
    return interval(value, _se(dyadic_var(loo, by_pair)), images_df(M), note, (0.0, 1.0))


def contrasts(y, arms, content_ids, style_ids, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Estimate]:
    """mean(y | arm a) − mean(y | arm b) for each (a, b) in ``pairs``, with the jackknife interval: each image's
    rows leave both arms together, so the same pairs' rows across arms stay paired, as they are."""
    y = np.asarray(y, dtype=float)
    arms = pd.Series(list(arms)).to_numpy()
    note = few_clusters(content_ids, style_ids)
    M, P = incidence(content_ids, style_ids), pair_incidence(content_ids, style_ids)
    out = {}
    for a, b in pairs:
        ia, ib = arms == a, arms == b
        value = float(y[ia].mean() - y[ib].mean())
        loo_a = _leave_one_out_means(y[ia], np.ones(ia.sum()), M[ia]) if stands(note) else None
        loo_b = _leave_one_out_means(y[ib], np.ones(ib.sum()), M[ib]) if loo_a is not None else None
        if loo_b is None:
            why = note if not stands(note) else "one image holds an arm's rows: no interval"
            out[(a, b)] = interval(value, float("nan"), 1, why)
            continue
        keep = ia | ib
        pa = _leave_one_out_means(y[ia], np.ones(ia.sum()), P[ia])
        pb = _leave_one_out_means(y[ib], np.ones(ib.sum()), P[ib])
        if pa is None or pb is None:
            out[(a, b)] = interval(value, float("nan"), 1, "one pair holds an arm's rows: no interval")
            continue
        se, df = _se(dyadic_var(loo_a - loo_b, pa - pb)), images_df(M[keep][:, M[keep].sum(axis=0) > 0])
        out[(a, b)] = interval(value, se, df, note, (-1.0, 1.0))
    return out


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979): the same numbers as statsmodels' ``multipletests(p,
    method="holm")`` (a test holds them equal), without its ``gc.collect()`` per call (a quarter second each here,
    which a report pays for every group)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    stepped = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out


def jackknife(content_ids, style_ids, leave_out: Callable[[np.ndarray], np.ndarray | None]):
    """The same interval for any estimator (the d50 fits use it): ``leave_out(M)`` returns, for the rows × units
    incidence matrix M, one parameter vector per unit, each estimated without that unit's rows (or None when one
    cannot be estimated). Returns (the parameters' covariance, df), or None when some image or pair carries the
    estimate (removing it leaves nothing to estimate: no interval)."""
    M = incidence(content_ids, style_ids)
    by_image = leave_out(M)
    by_pair = leave_out(pair_incidence(content_ids, style_ids)) if by_image is not None else None
    if by_pair is None:
        return None
    return dyadic_var(by_image, by_pair), images_df(M)
