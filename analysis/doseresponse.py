"""The dose at which the style artist overtakes the content artist (d50), per group, with its interval.

Two outcomes, one model: a logistic curve in log dose, fitted to the stylizations of doses > 0 (the null dose
has no logarithm) as a binomial GLM (statsmodels):
- ``named``: among stylizations the classifier names the style or the content artist, y = 1 when it names the
  style artist (stylizations named a third artist carry no information on this race and are left out);
- ``probs``: on every stylization, y = p_style / (p_style + p_content), the style artist's share of the two
  artists' probability mass, fitted as a fractional logit (Papke & Wooldridge 1996: the binomial quasi-likelihood
  with a fractional outcome; the jackknife covariance does not rely on the binomial variance).
logit E[y] = a + b·log(dose), so d50 = exp(−a/b), the dose where E[y] = ½. The covariance of (a, b) is the
jackknife over images of ``analysis.clustered`` (every fit refitted without each image, in either role, and
without each pair). The interval of log d50 = −a/b is Fieller's (1954): the set of x with
(a + b·x)² ≤ t²·Var(a + b·x); unlike the delta method it stays honest when the slope is uncertain, and it is
unbounded when the slope's own interval holds 0 (then no interval is printed). The per-group d50s of one table
are a family: each row also carries the slope's Holm-adjusted p-value (H0: the dose does not move the answer) and
a simultaneous (Bonferroni) d50 interval that covers all of the table's d50s at once with 95 %.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis import clustered
from analysis.names import D50_GROUPS as GROUPS
from analysis.records import kept
from core.errors import ConfigError

OUTCOMES = ("named", "probs")
FIT_METHOD = (
    "d50: logit E[y] = a + b·log(dose) on doses > 0, binomial GLM (fractional logit for the probabilities), "
    "covariance of (a, b) by the jackknife over images (either role) less 0.65 of the jackknife over pairs, Fieller's "
    "interval for log d50 with t (G − 1 df), each on its own; the table's d50s as a family: Holm-adjusted "
    "slope p-values and simultaneous (Bonferroni) d50 intervals"
)


def _response(rows: pd.DataFrame, outcome: str) -> pd.DataFrame:
    if outcome == "named":
        rows = rows[rows["outcome"].isin(("style", "content"))]
        return rows.assign(y=(rows["outcome"] == "style").astype(float))
    ps, pc = pd.to_numeric(rows["p_style"], errors="coerce"), pd.to_numeric(rows["p_content"], errors="coerce")
    rows = rows.assign(y=ps / (ps + pc))
    return rows[np.isfinite(rows["y"])]


def _glm(y: np.ndarray, X: np.ndarray, start=None):
    """The binomial GLM's fit, or None under separation or non-convergence (a d50 from either would be wrong;
    other warnings, e.g. about a fractional outcome, say nothing against the fit and pass)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = sm.GLM(y, X, family=sm.families.Binomial()).fit(start_params=start)
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError):
            return None
    fatal = (ConvergenceWarning, PerfectSeparationWarning)
    if any(issubclass(w.category, fatal) for w in caught) or not np.all(np.isfinite(res.params)):
        return None
    return res


def separation(log_level: np.ndarray, y: np.ndarray) -> str:
    """Why no fit stands when the log dose separates named answers (all 0 or 1), completely or quasi-completely
    (the two sets of doses meet at most at one dose); "" otherwise. With one covariate that is exactly when the
    likelihood has no maximum (Albert & Anderson 1984): the slope runs off to infinity, the optimiser stops
    wherever its tolerance says, and its leave-outs stop there too, so a jackknife interval around that slope
    would be narrow and meaningless. statsmodels' warning only sees fitted values at 0 or 1, not the quasi case."""
    if not np.isin(y, (0.0, 1.0)).all() or y.min() == y.max():
        return ""
    ones, zeros = log_level[y == 1], log_level[y == 0]  # y = 1: the style artist named
    for low, high, first, then in ((zeros, ones, "content", "style"), (ones, zeros, "style", "content")):
        if low.max() < high.min():
            where = f"≤ {np.exp(low.max()):.3g}, the {then} artist at every dose ≥ {np.exp(high.min()):.3g}"
        elif low.max() == high.min():
            where = f"below {np.exp(low.max()):.3g}, the {then} artist above it, both at it"
        else:
            continue
        return f"separation: the {first} artist at every dose {where}; the d50 lies between (the slope is unbounded: no fit)"
    return ""


def fit_glm(rows: pd.DataFrame):
    """(parameters (a, b), their jackknife (covariance, df) or None) of y on (1, log level), or (None, why not)."""
    if rows["level"].nunique() < 2:
        return None, "fewer than 2 doses > 0 with answers: no fit"
    if rows["y"].min() == rows["y"].max():
        return None, "every answer agrees: no fit"
    y = rows["y"].to_numpy(dtype=float)
    X = np.column_stack([np.ones(len(rows)), np.log(rows["level"].to_numpy(dtype=float))])
    split = separation(X[:, 1], y)
    if split:
        return None, split
    res = _glm(y, X)
    if res is None:
        return None, "the fit failed (separation or no convergence): no d50"
    params = np.asarray(res.params)
    jack = None
    if clustered.stands(clustered.few_clusters(rows["content_image_id"], rows["style_image_id"])):
        jack = clustered.jackknife(rows["content_image_id"], rows["style_image_id"], one_step(X, y, params))
    return (params, jack), ""


def one_step(X: np.ndarray, y: np.ndarray, params: np.ndarray):
    """Leave-out refits as one Newton step from the full fit (Pregibon 1981's one-step approximation, the usual
    way to jackknife a GLM): θ₍g₎ = θ̂ − (H − H_g)⁻¹ U_g, with U_g and H_g the score and information of the rows
    removed. It needs no refit per image or pair, so a table of many groups stays fast; a removal that leaves the
    remaining information singular (one dose left) gives None: that unit carries the fit."""
    mu = 1 / (1 + np.exp(-X @ params))
    score = X * (y - mu)[:, None]  # per row; they sum to 0 at the fit
    info = np.einsum("r,ri,rj->rij", mu * (1 - mu), X, X)

    def leave_out(M: np.ndarray) -> np.ndarray | None:
        U, H = M.T @ score, np.einsum("rg,rij->gij", M, info)
        left = info.sum(axis=0) - H
        if np.any(np.linalg.det(left) <= 1e-10 * np.linalg.det(info.sum(axis=0))):
            return None
        return params - np.linalg.solve(left, U[:, :, None])[:, :, 0]

    return leave_out


def fieller(a: float, b: float, cov: np.ndarray, q: float) -> tuple[float, float]:
    """Fieller's interval for x = −a/b: {x : (a + b·x)² ≤ q²·(V_aa + 2x·V_ab + x²·V_bb)}; (nan, nan) when the set
    is unbounded (the slope's interval holds 0)."""
    A = b * b - q * q * cov[1, 1]
    if A <= 0:
        return float("nan"), float("nan")
    B = 2 * (a * b - q * q * cov[0, 1])
    C = a * a - q * q * cov[0, 0]
    root = np.sqrt(max(B * B - 4 * A * C, 0.0))
    return float((-B - root) / (2 * A)), float((-B + root) / (2 * A))


def d50(params: np.ndarray, jack, levels: np.ndarray, note: str) -> dict:
    """d50 = exp(−a/b) with Fieller's interval, the slope with its interval and p-value, and the notes that say
    why an interval is absent or a value extrapolated."""
    from scipy import stats

    a, b = (float(v) for v in params)
    notes = [note] if note else []
    out = {"slope": b, "slope_low": np.nan, "slope_high": np.nan, "slope_p": np.nan, "df": np.nan}
    out |= {"d50": np.nan, "d50_low": np.nan, "d50_high": np.nan, "extrapolated": ""}
    if jack is None and clustered.stands(note):
        notes.append("one image or pair carries the fit: no interval")
    cov, df = jack if jack is not None else (None, np.nan)
    if cov is not None:
        slope = clustered.interval(b, float(np.sqrt(cov[1, 1])) if cov[1, 1] > 0 else np.nan, df, "")
        out |= {"slope_low": slope.low, "slope_high": slope.high, "slope_p": slope.p_value, "df": df}
        out["cov"] = cov
    if b == 0:
        return out | {"note": "; ".join([*notes, "flat: no crossing"])}
    value = float(np.exp(-a / b))
    out["d50"] = value
    if value < levels.min() or value > levels.max():
        out["extrapolated"] = "below" if value < levels.min() else "above"
        notes.append(f"outside the doses tested ({levels.min():g}–{levels.max():g}): extrapolated")
    if b < 0:
        notes.append("the style artist loses ground as the dose rises")
    if cov is not None:
        low, high = fieller(a, b, cov, float(stats.t.ppf(0.5 + clustered.LEVEL / 2, df)))
        if np.isnan(low):
            notes.append("slope not established (its interval holds 0): Fieller's interval is unbounded")
        out |= {"d50_low": float(np.exp(low)), "d50_high": float(np.exp(high))} if np.isfinite(low) else {}
    return out | {"note": "; ".join(notes)}


def _groups(rows: pd.DataFrame, keys: tuple[str, ...]):
    if not keys:
        yield (), rows
        return
    for key, part in rows.groupby(list(keys), sort=True):
        yield (key if isinstance(key, tuple) else (key,)), part


def _fit_group(part: pd.DataFrame, outcome: str, base: dict) -> tuple[dict, tuple | None]:
    """One group's d50 row for one outcome, and its fit (params, jackknife) for the curves; (row, None) without."""
    data = _response(part, outcome)
    base = base | {"outcome": outcome, "n": len(data)}
    base |= {"content_images": data["content_image_id"].nunique(), "style_images": data["style_image_id"].nunique()}
    if data.empty:
        return base | {"d50": np.nan, "note": "no answers to fit"}, None
    fit, why = fit_glm(data)
    if fit is None:
        return base | {"d50": np.nan, "note": why}, None
    few = clustered.few_clusters(data["content_image_id"], data["style_image_id"])
    row = d50(fit[0], fit[1], data["level"].to_numpy(dtype=float), few)
    row.pop("cov", None)
    return base | row, fit


def family(fits: pd.DataFrame, covs: list) -> pd.DataFrame:
    """Per outcome, the table's groups as one family: Holm-adjusted slope p-values and simultaneous d50 intervals
    (Bonferroni over the groups that have an interval: each at level 1 − 0.05/k). ``covs``: each row's jackknife
    covariance of (a, b), kept out of the frame (a matrix per row)."""
    from scipy import stats

    fits = fits.assign(slope_p_holm=np.nan, d50_low_simultaneous=np.nan, d50_high_simultaneous=np.nan, family=0)
    for idx in fits.groupby("outcome").groups.values():
        part = fits.loc[idx]
        tested = part["slope_p"].notna()
        if tested.any():
            fits.loc[part.index[tested], "slope_p_holm"] = clustered.holm(part.loc[tested, "slope_p"])
        k = int(part["d50_low"].notna().sum())
        fits.loc[idx, "family"] = k
        for i in part.index[part["d50_low"].notna()]:
            q = float(stats.t.ppf(1 - (1 - clustered.LEVEL) / (2 * k), fits.at[i, "df"]))
            lo, hi = fieller(-np.log(fits.at[i, "d50"]) * fits.at[i, "slope"], fits.at[i, "slope"], covs[i], q)
            fits.loc[i, ["d50_low_simultaneous", "d50_high_simultaneous"]] = (np.exp(lo), np.exp(hi))
    return fits


def dose_response(records: pd.DataFrame, by: str = "style-artist", condition: str = "both") -> pd.DataFrame:
    """Per group and outcome ('named', 'probs'): stylizations and images behind the fit, the slope in log dose with
    its interval and p-value, d50 with its interval (NaN where none stands, ``note`` says why; ``extrapolated``
    'below' or 'above' when it lies outside the doses tested), and the family's adjustments (``family``)."""
    if by not in GROUPS:
        raise ConfigError(f"unknown grouping {by!r}; choose from {', '.join(GROUPS)}")
    keys = GROUPS[by]
    rows = kept(records, condition)
    rows = rows[pd.to_numeric(rows["level"], errors="coerce") > 0]
    out, covs = [], []
    for gkey, part in _groups(rows, keys):
        for outcome in OUTCOMES:
            base = {**dict(zip(keys, gkey)), "treatment": part["treatment"].iloc[0], "condition": condition}
            row, fit = _fit_group(part, outcome, base)
            out.append(row)
            covs.append(fit[1][0] if fit is not None and fit[1] is not None else None)
    columns = [*keys, "outcome", "treatment", "n", "content_images", "style_images", "slope", "slope_low"]
    columns += ["slope_high", "slope_p", "df", "d50", "d50_low", "d50_high", "extrapolated", "note", "condition"]
    return family(pd.DataFrame(out, columns=columns), covs)


def dose_curves(records: pd.DataFrame, by: str = "all", condition: str = "both", points: int = 40) -> pd.DataFrame:
    """The fitted curves for plotting: per group and outcome, E[y] over a grid of log-spaced doses spanning the
    doses tested, with a pointwise 95 % band (the jackknife covariance, on the logit scale) and the observed means
    per dose (``observed``: True rows)."""
    from scipy import stats
    from scipy.special import expit

    keys = GROUPS[by] if by in GROUPS else ()
    rows = kept(records, condition)
    rows = rows[pd.to_numeric(rows["level"], errors="coerce") > 0]
    out = []
    for gkey, part in _groups(rows, keys):
        for outcome in OUTCOMES:
            data = _response(part, outcome)
            base = {**dict(zip(keys, gkey)), "outcome": outcome}
            for level, y in data.groupby("level")["y"]:
                out.append(base | {"level": float(level), "fit": float(y.mean()), "observed": True})
            fit, _ = fit_glm(data) if not data.empty else (None, "")
            if fit is None:
                continue
            (params, jack) = fit
            grid = np.exp(np.linspace(np.log(data["level"].min()), np.log(data["level"].max()), points))
            X = np.column_stack([np.ones(points), np.log(grid)])
            eta = X @ params
            cov, df = jack if jack is not None else (np.full((2, 2), np.nan), 1.0)
            se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", X, cov, X), 0, None))
            q = stats.t.ppf(0.5 + clustered.LEVEL / 2, df)
            for g, e, s in zip(grid, eta, se):
                band = (float(expit(e - q * s)), float(expit(e + q * s))) if np.isfinite(s) else (np.nan, np.nan)
                out.append(base | {"level": float(g), "fit": float(expit(e)), "low": band[0], "high": band[1]})
                out[-1]["observed"] = False
    return pd.DataFrame(out)
