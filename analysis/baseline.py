"""The baselines that apply, beside every attribution table (docs/architecture.md, rule 9: baselines are
empirical; 1/K is only uniform chance).

Per stratum of the attribution table: the control arm and the null dose (from that table), the classifier's
own confusion of the content artist's works for the style artist on the unstylized controls, 1/K labelled
uniform chance, the equal-weight rates over (style artist, content artist) cells, the fraction of pairs the
conditioning keeps, the rates under ``--condition none``, and the same-artist arm at the same level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import clustered
from analysis.names import CONDITIONS
from analysis.records import kept
from analysis.tables import attribution_table, group_keys

SHOWN = ("content", "style")


def confusion(controls: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Per (style artist A, content artist B) cell of the batch: the share of B's controls that the classifier
    names A, and its mean probability for A on them. Only the batch's own controls count (its images, answered by
    its checkpoints), so the baseline does not move when another batch of the same classifier runs."""
    shas = {None if pd.isna(v) else v for v in records["checkpoint_sha256"]}
    images = set(records["content_image_id"]) | set(records["style_image_id"])
    mine = controls[
        [(None if pd.isna(v) else v) in shas for v in controls["checkpoint_sha256"]]
        & controls["image_id"].isin(images).to_numpy()
    ]
    cells = records[records["arm"] == "cross"][["style_artist", "content_artist"]].drop_duplicates()
    out = []
    for a, b in cells.itertuples(index=False):
        of_b = mine[mine["label"] == b]
        probs = [p.get(a) for p in of_b["probs"] if isinstance(p, dict) and a in p]
        out.append(
            {
                "style_artist": a,
                "content_artist": b,
                "controls": len(of_b),
                "confused": float((of_b["predicted"] == a).mean()) if len(of_b) else np.nan,
                "confused_p": float(np.mean(probs)) if probs else np.nan,
            }
        )
    return pd.DataFrame(out, columns=["style_artist", "content_artist", "controls", "confused", "confused_p"])


def _equal_weight(part: pd.DataFrame, outcome: str) -> clustered.Estimate:
    """Each (style artist, content artist) cell weighs the same: a WLS mean with weights 1 / cell size."""
    cell = part.groupby(["style_artist", "content_artist"])["pair_hash"].transform("size").to_numpy(dtype=float)
    return clustered.rate(part["outcome"] == outcome, part["content_image_id"], part["style_image_id"], 1 / cell)


def _same_arm(
    records: pd.DataFrame, keys: tuple[str, ...], key: tuple, level: float, condition: str
) -> clustered.Estimate:
    """How often the classifier still names the artist when an artist's style is painted onto their own work, on
    the same-artist pairs that pass the same conditioning as the cross-artist rows."""
    same = records[(records["arm"] == "same") & (records["level"] == level)]
    for col in CONDITIONS[condition]:
        same = same[same[col].astype(bool)]
    for k, v in zip(keys, key):
        same = same[same[k] == v]
    if same.empty:
        return clustered.Estimate(np.nan, np.nan, np.nan, "no same-artist pairs")
    return clustered.rate(same["predicted"] == same["content_artist"], same["content_image_id"], same["style_image_id"])


def baselines(
    records: pd.DataFrame, controls: pd.DataFrame, classes: list[str], by: str = "dose", condition: str = "both"
) -> pd.DataFrame:
    """One row per (treatment, level, *group) of ``attribution_table``: the baselines named in this module's
    docstring, each rate with its jackknife interval over images (``*_low``, ``*_high``)."""
    keys = group_keys(by)
    table = attribution_table(records, by, condition)
    loose = attribution_table(records, by, "none")
    conf = confusion(controls, records)
    rows = kept(records, condition)
    every = kept(records, "none")
    out = []
    for r in table[table["treatment"] != "control"].itertuples(index=False):
        r = r._asdict()
        gkey = tuple(r[k] for k in keys)
        match = pd.Series(True, index=table.index)
        for k, v in zip(keys, gkey):
            match &= table[k] == v
        control = table[match & (table["treatment"] == "control")].iloc[0]
        null = table[match & (table["treatment"] != "control")].sort_values("level").iloc[0]
        part, whole = rows[rows["level"] == r["level"]], every[every["level"] == r["level"]]
        for k, v in zip(keys, gkey):
            part, whole = part[part[k] == v], whole[whole[k] == v]
        lmatch = (loose["treatment"] == r["treatment"]) & (loose["level"] == r["level"])
        for k, v in zip(keys, gkey):
            lmatch &= loose[k] == v
        unconditioned = loose[lmatch].iloc[0]
        cells = conf.merge(part[["style_artist", "content_artist"]].drop_duplicates(), how="inner")
        row = {"treatment": r["treatment"], "level": r["level"], **dict(zip(keys, gkey))}
        row |= {"chance_uniform": 1 / len(classes)}
        row |= {"confused_content_as_style": cells["confused"].mean(), "confused_p": cells["confused_p"].mean()}
        row |= {"pairs_kept": part["pair"].nunique(), "pairs_all": whole["pair"].nunique()}
        row["kept_fraction"] = row["pairs_kept"] / row["pairs_all"] if row["pairs_all"] else np.nan
        for o in SHOWN:
            row |= {f"control_{o}_rate": control[f"{o}_rate"], f"null_{o}_rate": null[f"{o}_rate"]}
            row["null_level"] = null["level"]
            ew = _equal_weight(part, o)
            row |= {f"equal_weight_{o}_rate": ew.value, f"equal_weight_{o}_low": ew.low}
            row |= {f"equal_weight_{o}_high": ew.high}
            row |= {f"unconditioned_{o}_rate": unconditioned[f"{o}_rate"]}
            row |= {f"unconditioned_{o}_low": unconditioned[f"{o}_low"]}
            row |= {f"unconditioned_{o}_high": unconditioned[f"{o}_high"]}
        same = _same_arm(records, keys if by != "pair" else (), gkey if by != "pair" else (), r["level"], condition)
        row |= {"same_artist_named": same.value, "same_artist_low": same.low, "same_artist_high": same.high}
        row["same_artist_note"] = same.note
        out.append(row)
    return pd.DataFrame(out)


def kept_per_cell(records: pd.DataFrame, condition: str = "both") -> pd.DataFrame:
    """Per (style artist, content artist) cell: pairs in the batch, pairs the conditioning keeps, the fraction
    (the conditioning keeps about acc_A × acc_B of a cell, so pooled rates lean on well-recognised artists)."""
    every = kept(records, "none").groupby(["style_artist", "content_artist"])["pair"].nunique()
    mine = kept(records, condition).groupby(["style_artist", "content_artist"])["pair"].nunique()
    frame = pd.DataFrame({"pairs_all": every, "pairs_kept": mine}).fillna(0).astype(int).reset_index()
    frame["kept_fraction"] = frame["pairs_kept"] / frame["pairs_all"]
    return frame
