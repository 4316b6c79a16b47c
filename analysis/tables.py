"""The attribution table (whom the classifier names, per dose and group) and the contrasts on the same pairs.

Every rate and contrast carries its two-way clustered interval (``analysis.clustered``). A batch is all-dose or
all-β (``treatment``); strata are (treatment, level) and the group's artists, never pooled across levels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import clustered
from analysis.names import GROUPS
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
    for col, name in (("loss_ratio", "median_loss_ratio"), ("balance", "median_balance")):
        values = pd.to_numeric(part[col], errors="coerce").dropna() if col in part else pd.Series([], dtype=float)
        row[name] = float(values.median()) if len(values) else float("nan")
    return row | _settling(part)


def _settling(part: pd.DataFrame) -> dict:
    """Whether the answers had settled: the share that changed over the last half of the optimisation, the share
    of final answers that are near-ties, and the share that changed among the decisive (not near-tie) ones. The
    split says whether the optimisation still moves the answer or the classifier cannot tell two artists apart."""
    half = part["predicted_half"] if "predicted_half" in part else pd.Series([None] * len(part))
    known = half.notna().to_numpy()
    changed = half.to_numpy() != part["predicted"].to_numpy()
    probs = part["probs"] if "probs" in part else [None] * len(part)
    margins = np.array([top2_margin(p) for p in probs], dtype=float)
    rated = ~np.isnan(margins)
    decisive = known & rated & (margins >= NEAR_TIE)

    def share(mask: np.ndarray, of: np.ndarray) -> float:
        return float(mask[of].mean()) if of.any() else float("nan")

    return {
        "changed_last_half": share(changed, known),
        "near_ties": share(margins < NEAR_TIE, rated),
        "decisive": int(decisive.sum()),
        "changed_decisive": share(changed, decisive),
    }


def attribution_table(records: pd.DataFrame, by: str = "dose", condition: str = "both") -> pd.DataFrame:
    """One row per stratum of the kept cross-artist stylizations — (treatment, level, *group) — and, first in each
    group, the control arm (treatment 'control': the unstylized content image's answer on the same pairs).
    Columns: n, pairs, content_images, style_images, and per outcome its count, rate, low and high (two-way
    clustered; NaN with ``interval_note`` where there is no interval), the median loss ratio and balance, the
    share of answers that changed over the last half of the optimisation, the share of near-ties (top-2 margin
    below ``NEAR_TIE``) and the share that changed among the ``decisive`` answers."""
    keys = group_keys(by)
    rows = kept(records, condition)
    out = []
    for gkey, part in _groups(rows, keys):
        control = control_outcomes(part)
        # The control was never optimised: it has no balance, loss ratio or answer on the way.
        unoptimised = {"median_loss_ratio": np.nan, "median_balance": np.nan, "changed_last_half": np.nan}
        unoptimised |= {"near_ties": np.nan, "decisive": 0, "changed_decisive": np.nan}
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


def contrasts(records: pd.DataFrame, by: str = "dose", condition: str = "both") -> pd.DataFrame:
    """Per group and per level d: rate(d) − rate(lowest level, the null dose when there is one) and rate(d) −
    control rate, for each outcome, over the pairs complete at every level, with two-way clustered intervals from
    one fit per group and outcome (a pair's stylizations and its control are one pair's, in the same clusters)."""
    keys = group_keys(by)
    rows = kept(records, condition)
    out = []
    for gkey, part in _groups(rows, keys):
        part = complete_pairs(part)
        if part.empty:
            continue
        control = control_outcomes(part)
        both = pd.concat([part, control], ignore_index=True)
        levels = [float(v) for v in sorted(part["level"].unique())]
        label = {lv: f"level {i}" for i, lv in enumerate(levels)}  # arm names; the level itself is kept aside
        level_of = {v: k for k, v in label.items()}
        arms = ["control" if t == "control" else label[float(lv)] for t, lv in zip(both["treatment"], both["level"])]
        wanted = [(label[lv], label[levels[0]]) for lv in levels[1:]] + [(label[lv], "control") for lv in levels]
        for o in OUTCOMES:
            est = clustered.contrasts(
                both["outcome"] == o, arms, both["content_image_id"], both["style_image_id"], wanted
            )
            for (a, b), e in est.items():
                out.append(
                    {
                        "treatment": part["treatment"].iloc[0],
                        "level": level_of[a],
                        **dict(zip(keys, gkey)),
                        "against": "control" if b == "control" else "lowest level",
                        "against_level": np.nan if b == "control" else level_of[b],
                        "outcome": o,
                        "difference": e.value,
                        "low": e.low,
                        "high": e.high,
                        "pairs": part["pair"].nunique(),
                        "content_images": part["content_image_id"].nunique(),
                        "style_images": part["style_image_id"].nunique(),
                        "interval_note": e.note,
                        "condition": condition,
                    }
                )
    frame = pd.DataFrame(out)
    if frame.empty:
        return frame
    return frame.sort_values([*keys, "outcome", "against", "level"], kind="stable").reset_index(drop=True)
