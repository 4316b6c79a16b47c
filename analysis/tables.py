"""The attribution table (whom the classifier names, per dose and group) and the contrasts on the same pairs.

Every rate and contrast carries its jackknife interval over images (``analysis.clustered``), each at 95 % on its
own; a group's contrasts are one family and carry Holm-adjusted p-values. A batch is all-dose or all-β
(``treatment``); strata are (treatment, level) and the group's artists, never pooled across levels. Under a
conditioning that selects on the control arm (``names.SELECTS_CONTROL``) the contrasts are against the lowest
level only: the control's content rate is 1 there by construction, so a contrast with it would be mechanical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import clustered
from analysis.names import GROUPS, SELECTS_CONTROL
from analysis.records import NEAR_TIE, OUTCOMES, control_outcomes, kept, top2_margin
from core.errors import ConfigError


def group_keys(by: str) -> tuple[str, ...]:
    if by not in GROUPS:
        raise ConfigError(f"unknown grouping {by!r}; choose from {', '.join(GROUPS)}")
    return GROUPS[by]


def _groups(rows: pd.DataFrame, keys: tuple[str, ...]):
    if not keys:
        yield (), rows
        return
    for key, part in rows.groupby(list(keys), sort=True):
        yield (key if isinstance(key, tuple) else (key,)), part


def _stratum(part: pd.DataFrame) -> dict:
    """Counts, each outcome's rate with its interval, and the record's medians for one stratum's rows."""
    row = {
        "n": len(part),
        "pairs": part["pair"].nunique(),
        "content_images": part["content_image_id"].nunique(),
        "style_images": part["style_image_id"].nunique(),
    }
    for o in OUTCOMES:
        e = clustered.rate(part["outcome"] == o, part["content_image_id"], part["style_image_id"])
        row |= {f"{o}_count": int((part["outcome"] == o).sum()), f"{o}_rate": e.value, f"{o}_low": e.low}
        row |= {f"{o}_high": e.high, f"{o}_note": e.note}
    row["interval_note"] = clustered.few_clusters(part["content_image_id"], part["style_image_id"])
    return row | _record(part) | _settling(part)


def _record(part: pd.DataFrame) -> dict:
    """What the dose did not set: the achieved style/content loss ratio's median and spread across the stratum's
    stylizations (quartiles). The balance is the target the dose set (it equals the dose by construction), shown
    as such, never as evidence."""

    def values(col: str) -> pd.Series:
        return pd.to_numeric(part[col], errors="coerce").dropna() if col in part else pd.Series([], dtype=float)

    ratio, balance = values("loss_ratio"), values("balance")
    quart = ratio.quantile([0.25, 0.5, 0.75]).to_list() if len(ratio) else [np.nan] * 3
    out = {"loss_ratio_q25": quart[0], "median_loss_ratio": quart[1], "loss_ratio_q75": quart[2]}
    return out | {"target_balance": float(balance.median()) if len(balance) else np.nan}


def _settling(part: pd.DataFrame) -> dict:
    """Whether the answers had settled: the share that changed over the last half of the optimisation, the share
    of final answers that are near-ties, and the share that changed among the decisive (not near-tie) ones. The
    split says whether the optimisation still moves the answer or the classifier cannot tell two artists apart.
    ``stopped_early``: how many stylizations the optimiser stopped before their steps ran out (``stop_reason``
    says why, on each row); rows that predate the record (no ``steps_done``) are not counted."""
    half = part["predicted_half"] if "predicted_half" in part else pd.Series([None] * len(part))
    known = half.notna().to_numpy()
    changed = half.to_numpy() != part["predicted"].to_numpy()
    probs = part["probs"] if "probs" in part else [None] * len(part)
    margins = np.array([top2_margin(p) for p in probs], dtype=float)
    rated = ~np.isnan(margins)
    decisive = known & rated & (margins >= NEAR_TIE)

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else float("nan")

    early = 0
    if "steps_done" in part and "steps" in part:  # a NaN steps_done (not recorded) compares False: not early
        done, steps = (pd.to_numeric(part[c], errors="coerce") for c in ("steps_done", "steps"))
        early = int((done < steps).sum())
    return {
        "changed_last_half": share(changed, known),
        "near_ties": share(margins < NEAR_TIE, rated),
        "decisive": int(decisive.sum()),
        "changed_decisive": share(changed, decisive),
        "stopped_early": early,
    }


def attribution_table(records: pd.DataFrame, by: str = "dose", condition: str = "both") -> pd.DataFrame:
    """One row per stratum of the kept cross-artist stylizations — (treatment, level, *group) — and, first in each
    group, the control arm (treatment 'control': the unstylized content image's answer on the same pairs).
    Columns: n, pairs, content_images, style_images, and per outcome its count, rate, low and high (the jackknife
    over images; NaN with ``interval_note`` where there is no interval), the achieved loss ratio's median and
    quartiles, the target balance, the
    share of answers that changed over the last half of the optimisation, the share of near-ties (top-2 margin
    below ``NEAR_TIE``), the share that changed among the ``decisive`` answers, and how many stylizations were
    ``stopped_early`` by their optimiser (0 for the control, which was never optimised)."""
    keys = group_keys(by)
    rows = kept(records, condition)
    out = []
    for gkey, part in _groups(rows, keys):
        control = control_outcomes(part)
        # The control was never optimised: it has no balance, loss ratio or answer on the way.
        unoptimised = {"median_loss_ratio": np.nan, "loss_ratio_q25": np.nan, "loss_ratio_q75": np.nan}
        unoptimised |= {"target_balance": np.nan, "changed_last_half": np.nan}
        unoptimised |= {"near_ties": np.nan, "decisive": 0, "changed_decisive": np.nan, "stopped_early": 0}
        out.append(
            {"treatment": "control", "level": np.nan, **dict(zip(keys, gkey)), **_stratum(control), **unoptimised}
        )
        for (treatment, level), stratum in part.groupby(["treatment", "level"], sort=True):
            out.append({"treatment": treatment, "level": level, **dict(zip(keys, gkey)), **_stratum(stratum)})
    columns = ["treatment", "level", *keys]
    frame = pd.DataFrame(out)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame.insert(len(columns), "condition", condition)
    return frame


def complete_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the pairs present at every level of ``rows`` (the contrasts compare the same pairs)."""
    levels = rows["level"].nunique()
    per_pair = rows.groupby("pair")["level"].nunique()
    return rows[rows["pair"].map(per_pair) == levels]


def _arms(part: pd.DataFrame, condition: str):
    """The rows of one group's contrasts (its stylizations and, where not mechanical, its control arm), each row's
    arm name, the wanted (arm, reference) pairs and each arm's level."""
    control = control_outcomes(part) if condition not in SELECTS_CONTROL else part.iloc[0:0]
    both = pd.concat([part, control], ignore_index=True)
    levels = [float(v) for v in sorted(part["level"].unique())]
    label = {lv: f"level {i}" for i, lv in enumerate(levels)}  # arm names; the level itself is kept aside
    level_of = {v: k for k, v in label.items()}
    arms = ["control" if t == "control" else label[float(lv)] for t, lv in zip(both["treatment"], both["level"])]
    wanted = [(label[lv], label[levels[0]]) for lv in levels[1:]]
    if condition not in SELECTS_CONTROL:
        wanted += [(label[lv], "control") for lv in levels]
    return both, arms, wanted, level_of


def _group_contrasts(part: pd.DataFrame, keys, gkey, condition: str) -> list[dict]:
    both, arms, wanted, level_of = _arms(part, condition)
    out = []
    for o in OUTCOMES:
        est = clustered.contrasts(both["outcome"] == o, arms, both["content_image_id"], both["style_image_id"], wanted)
        for (a, b), e in est.items():
            row = {"treatment": part["treatment"].iloc[0], "level": level_of[a], **dict(zip(keys, gkey))}
            row |= {"against": "control" if b == "control" else "lowest level"}
            row |= {"against_level": np.nan if b == "control" else level_of[b], "outcome": o}
            row |= {
                "difference": e.value,
                "low": e.low,
                "high": e.high,
                "p": e.p_value,
                "pairs": part["pair"].nunique(),
            }
            row |= {"content_images": part["content_image_id"].nunique()}
            row |= {"style_images": part["style_image_id"].nunique(), "interval_note": e.note, "condition": condition}
            out.append(row)
    return out


def contrasts(records: pd.DataFrame, by: str = "dose", condition: str = "both") -> pd.DataFrame:
    """Per group and per level d: rate(d) − rate(lowest level, the null dose when there is one) and, where the
    conditioning does not select on the control arm, rate(d) − control rate, for each outcome, over the pairs
    complete at every level, with jackknife intervals over images (a pair's stylizations and its control share its
    images, so they stay paired). ``p`` is each difference's two-sided p-value, ``p_holm`` Holm's adjustment over
    the group's contrasts and outcomes (the family; ``family`` its size)."""
    keys = group_keys(by)
    rows = kept(records, condition)
    out = []
    for gkey, part in _groups(rows, keys):
        part = complete_pairs(part)
        if not part.empty:
            family = pd.DataFrame(_group_contrasts(part, keys, gkey, condition))
            tested = family["p"].notna()
            family["p_holm"] = np.nan
            if tested.any():
                family.loc[tested, "p_holm"] = clustered.holm(family.loc[tested, "p"])
            out.append(family.assign(family=int(tested.sum())))
    if not out:
        return pd.DataFrame()
    frame = pd.concat(out, ignore_index=True)
    return frame.sort_values([*keys, "outcome", "against", "level"], kind="stable").reset_index(drop=True)
