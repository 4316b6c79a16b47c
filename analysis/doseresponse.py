"""The dose at which the style artist overtakes the content artist (d50), per group, with its interval.

Two outcomes, one model: a logistic curve in log dose, fitted to the stylizations of doses > 0 (the null dose
has no logarithm) as a binomial GLM with the two-way cluster-robust covariance (content image × style image):
- ``named``: among stylizations the classifier names the style or the content artist, y = 1 when it names the
  style artist (stylizations named a third artist carry no information on this race and are left out);
- ``probs``: on every stylization, y = p_style / (p_style + p_content), the style artist's share of the two
  artists' probability mass, fitted as a fractional logit (Papke & Wooldridge 1996: the binomial quasi-likelihood
  with a fractional outcome; the cluster-robust covariance does not rely on the binomial variance).
logit E[y] = a + b·log(dose), so d50 = exp(−a/b), the dose where E[y] = ½. Its interval is the delta method on
log d50 (gradient (−1/b, a/b²)), t with G−1 df, exponentiated. No library fits d50 with a two-way clustered
interval, so this ratio and its gradient are written here; the fit and covariance are statsmodels'.
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
    "two-way cluster-robust covariance (content image × style image), delta method on log d50, t with G−1 df"
)


def _response(rows: pd.DataFrame, outcome: str) -> pd.DataFrame:
    if outcome == "named":
        rows = rows[rows["outcome"].isin(("style", "content"))]
        return rows.assign(y=(rows["outcome"] == "style").astype(float))
    ps, pc = pd.to_numeric(rows["p_style"], errors="coerce"), pd.to_numeric(rows["p_content"], errors="coerce")
    rows = rows.assign(y=ps / (ps + pc))
    return rows[np.isfinite(rows["y"])]


def fit_glm(rows: pd.DataFrame):
    """The binomial GLM of y on (1, log level) with two-way clustered covariance, or (None, why not)."""
    import statsmodels.api as sm

    if rows["level"].nunique() < 2:
        return None, "fewer than 2 doses > 0 with answers: no fit"
    if rows["y"].min() == rows["y"].max():
        return None, "every answer agrees: no fit"
    X = np.column_stack([np.ones(len(rows)), np.log(rows["level"].to_numpy(dtype=float))])
    groups = clustered.groups_of(rows["content_image_id"], rows["style_image_id"])
    # One content or style image is one cluster: no clustered covariance exists (statsmodels divides by G - 1).
    # The point estimate still stands; d50() gives it no interval (clustered.few_clusters says why).
    one_cluster = min(rows["content_image_id"].nunique(), rows["style_image_id"].nunique()) < 2
    cov = {"cov_type": "nonrobust"} if one_cluster else {"cov_type": "cluster", "cov_kwds": {"groups": groups}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # separation and non-convergence: no d50 rather than a wrong one
        try:
            res = sm.GLM(rows["y"].to_numpy(dtype=float), X, family=sm.families.Binomial()).fit(**cov, use_t=True)
        except (Warning, ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            return None, f"the fit failed ({type(exc).__name__}): no d50"
    return res, ""


def d50(res, levels: np.ndarray, note: str) -> dict:
    """d50 = exp(−a/b) with its delta-method interval, and why there is no interval when there is none."""
    from scipy import stats

    a, b = (float(v) for v in res.params)
    cov = np.asarray(res.cov_params())
    df = float(getattr(res, "df_resid_inference", res.df_resid))  # clustered: G - 1; else the residual df
    q = stats.t.ppf(0.5 + clustered.LEVEL / 2, df)
    slope_se = float(np.sqrt(cov[1, 1])) if cov[1, 1] > 0 else float("nan")  # two-way: can be negative
    slope_low, slope_high = b - q * slope_se, b + q * slope_se
    out = {"slope": b, "slope_low": slope_low, "slope_high": slope_high}
    if not clustered.stands(note):
        out |= {"slope_low": np.nan, "slope_high": np.nan}
    if b == 0:
        return out | {"d50": np.nan, "d50_low": np.nan, "d50_high": np.nan, "note": "flat: no crossing"}
    log_d50 = -a / b
    grad = np.array([-1 / b, a / b**2])
    var = float(grad @ cov @ grad)
    se = float(np.sqrt(var)) if var > 0 else float("nan")
    value = float(np.exp(log_d50))
    established = slope_low > 0 or slope_high < 0
    notes = [note] if note else []
    if not established:
        notes.append("slope not established (its interval holds 0): no interval")
    if not (levels.min() <= value <= levels.max()):
        notes.append(f"outside the doses tested ({levels.min():g}–{levels.max():g}): extrapolated")
    if b < 0:
        notes.append("the style artist loses ground as the dose rises")
    low = high = np.nan
    if clustered.stands(note) and established and np.isfinite(se):
        low, high = float(np.exp(log_d50 - q * se)), float(np.exp(log_d50 + q * se))
    return out | {"d50": value, "d50_low": low, "d50_high": high, "note": "; ".join(notes)}


def _groups(rows: pd.DataFrame, keys: tuple[str, ...]):
    if not keys:
        yield (), rows
        return
    for key, part in rows.groupby(list(keys), sort=True):
        yield (key if isinstance(key, tuple) else (key,)), part


def dose_response(records: pd.DataFrame, by: str = "style-artist", condition: str = "both") -> pd.DataFrame:
    """Per group and outcome ('named', 'probs'): stylizations and images behind the fit, the slope in log dose with
    its interval, d50 with its interval (NaN where none stands, ``note`` says why)."""
    if by not in GROUPS:
        raise ConfigError(f"unknown grouping {by!r}; choose from {', '.join(GROUPS)}")
    keys = GROUPS[by]
    rows = kept(records, condition)
    rows = rows[pd.to_numeric(rows["level"], errors="coerce") > 0]
    out = []
    for gkey, part in _groups(rows, keys):
        for outcome in OUTCOMES:
            data = _response(part, outcome)
            base = {**dict(zip(keys, gkey)), "outcome": outcome, "n": len(data)}
            base |= {
                "content_images": data["content_image_id"].nunique(),
                "style_images": data["style_image_id"].nunique(),
            }
            base |= {"treatment": part["treatment"].iloc[0], "condition": condition}
            if data.empty:
                out.append(base | {"d50": np.nan, "note": "no answers to fit"})
                continue
            res, why = fit_glm(data)
            if res is None:
                out.append(base | {"d50": np.nan, "note": why})
                continue
            few = clustered.few_clusters(data["content_image_id"], data["style_image_id"])
            out.append(base | d50(res, data["level"].to_numpy(dtype=float), few))
    columns = [*keys, "outcome", "treatment", "n", "content_images", "style_images", "slope", "slope_low"]
    columns += ["slope_high", "d50", "d50_low", "d50_high", "note", "condition"]
    return pd.DataFrame(out, columns=columns)


def dose_curves(records: pd.DataFrame, by: str = "all", condition: str = "both", points: int = 40) -> pd.DataFrame:
    """The fitted curves for plotting: per group and outcome, E[y] over a grid of log-spaced doses spanning the
    doses tested, with a pointwise 95 % band (two-way clustered, on the logit scale) and the observed means per
    dose (``observed``: True rows)."""
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
            res, _ = fit_glm(data) if not data.empty else (None, "")
            if res is None:
                continue
            grid = np.exp(np.linspace(np.log(data["level"].min()), np.log(data["level"].max()), points))
            X = np.column_stack([np.ones(points), np.log(grid)])
            eta = X @ np.asarray(res.params)
            se = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", X, np.asarray(res.cov_params()), X), 0, None))
            q = stats.t.ppf(0.5 + clustered.LEVEL / 2, float(getattr(res, "df_resid_inference", res.df_resid)))
            few = not clustered.stands(clustered.few_clusters(data["content_image_id"], data["style_image_id"]))
            for g, e, s in zip(grid, eta, se):
                band = (np.nan, np.nan) if few else (float(expit(e - q * s)), float(expit(e + q * s)))
                out.append(base | {"level": float(g), "fit": float(expit(e)), "low": band[0], "high": band[1]})
                out[-1]["observed"] = False
    return pd.DataFrame(out)
