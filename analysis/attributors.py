"""Several attributors on the same stylized works (issue 31): their records, and their comparison.

``load_attributions`` returns an attributor's answers on a batch shaped exactly as ``records.load_batch``'s rows
(the named artist, every probability, the outcome, the matched controls' answers and whether they are
recognised, all by that attributor), so every table, contrast, baseline and d50 of the package works unchanged
for it. The batch's own classifier is the first attributor (``own_key``); its answers stay in the stylizations.

A comparison is paired: two attributors answer for the very same pictures. ``compare_rates`` takes, per level,
the difference of their style rates on the stylizations both answered and both keep (the conditioning applied
under each attributor's own controls), with ``clustered.contrasts``' interval (arms = attributor: an image's
rows leave both arms together). ``d50_ratio`` fits each attributor's d50 on those rows and gives the ratio of the
two with the jackknife over images of log d50_A − log d50_B (each fit's one-step leave-outs, as the d50
intervals): a ratio's interval on the log scale, t with G − 1 df. Both need both slopes positive.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from analysis import clustered
from analysis.doseresponse import OUTCOMES as D50_OUTCOMES
from analysis.doseresponse import _response, fit_glm, one_step
from analysis.records import _controls, _json, export_frame, find_batch, kept, load_batch, session_for
from core.attributors import own_key
from core.errors import ConfigError
from db.models import Attribution, Attributor, StyleBatchPair, Stylization


def attributors_of(source: Any, batch_ref: str) -> pd.DataFrame:
    """The attributors with answers on the batch: key, kind and how many stylizations they answered; the batch's
    own classifier first."""
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        ids = select(Stylization.id).join(StyleBatchPair, StyleBatchPair.pair_hash == Stylization.pair_hash)
        ids = ids.where(StyleBatchPair.batch_id == batch.id)
        rows = s.execute(
            select(Attributor.key, Attributor.kind, Attribution.subject_id)
            .join(Attribution, Attribution.attributor == Attributor.key)
            .where(Attribution.subject == "stylization", Attribution.subject_id.in_(ids))
        ).all()
        own = own_key(batch.classifier_run_id, _json(batch.spec).get("classifier_sha256"))
        n_own = len(s.scalars(ids).all())
    frame = pd.DataFrame(rows, columns=["key", "kind", "subject_id"])
    counted = frame.groupby(["key", "kind"], sort=True).size().rename("stylizations").reset_index()
    first = pd.DataFrame([{"key": own, "kind": "batch classifier", "stylizations": n_own}])
    return pd.concat([first, counted], ignore_index=True)


def resolve_key(source: Any, batch_ref: str, ref: str | None) -> str:
    """The attributor ``ref`` names on the batch: None or 'own' is the batch's classifier; else an exact key or
    the one key that starts with ``ref`` (one line of error otherwise)."""
    known = attributors_of(source, batch_ref)
    if ref in (None, "own"):
        return str(known["key"].iloc[0])
    keys = [k for k in known["key"] if k == ref] or [k for k in known["key"] if k.startswith(ref)]
    if len(keys) != 1:
        shown = ", ".join(known["key"])
        what = "no attributor" if not keys else "more than one attributor"
        raise ConfigError(f"{what} {ref!r} answered on this batch; it has {shown}")
    return keys[0]


def _outcome(predicted: str, content: str, style: str) -> str:
    if content == style:
        return "same"
    return "content" if predicted == content else "style" if predicted == style else "other"


def _prob(probs: Any, artist: str) -> float:
    probs = _json(probs)
    return float(probs.get(artist, np.nan)) if isinstance(probs, dict) else float("nan")


def _top3(probs: dict) -> list:
    return [[k, round(float(v), 6)] for k, v in sorted(probs.items(), key=lambda kv: -float(kv[1]))[:3]]


def _answers(session, key: str, subject: str, ids: list[int]) -> pd.DataFrame:
    cols = ["subject_id", "predicted", "probs", "near_content", "near_style"]
    rows = session.execute(
        select(
            Attribution.subject_id, Attribution.predicted, Attribution.probs, Attribution.near_content,
            Attribution.near_style,
        ).where(Attribution.attributor == key, Attribution.subject == subject, Attribution.subject_id.in_(ids))
    ).all()  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def _batch_controls(session, batch) -> pd.DataFrame:
    """The batch's matched controls: its own classifier's, at its size, of its checkpoint."""
    spec = _json(batch.spec)
    controls = _controls(session, batch.classifier_run_id, spec["style"]["size"])
    sha = spec.get("classifier_sha256")
    return controls[controls["checkpoint_sha256"].map(lambda h: h == sha if sha else h is None or h != h)]


def load_attribution_controls(source: Any, batch_ref: str, attributor: str | None = None) -> pd.DataFrame:
    """The batch's matched controls as ``records.load_controls`` returns them, answered by ``attributor``: its named
    artist, whether that is the painting's own, its probabilities (controls it has not answered are left out)."""
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        key = resolve_key(s, batch.id, attributor)
        controls = _batch_controls(s, batch)
        if key == resolve_key(s, batch.id, None):
            return controls
        answers = _answers(s, key, "control", [int(i) for i in controls["control_id"]])
    merged = controls.drop(columns=["predicted", "probs", "top3"]).merge(
        answers[["subject_id", "predicted", "probs"]], left_on="control_id", right_on="subject_id"
    )
    merged["probs"] = merged["probs"].map(_json)
    merged["top3"] = merged["probs"].map(_top3)
    merged["correct"] = (merged["predicted"] == merged["label"]).astype(bool)
    merged["checkpoint_sha256"] = key
    return merged.drop(columns=["subject_id"])


def load_attributions(source: Any, batch_ref: str, attributor: str | None = None) -> pd.DataFrame:
    """One row per stylization of the batch that ``attributor`` answered, shaped as ``load_batch``'s: its named
    artist, outcome, probabilities (``probs``, ``p_content``, ``p_style``, ``top3``) and its answers on the matched
    controls (``content_correct``, ``style_correct``, ``*_control_predicted``, ``*_control_p_*``); no answers on the
    way (``answers``, ``predicted_half``: None). ``attributor`` names the key (None: the batch's classifier, whose
    records are ``load_batch``'s). Adds ``attributor`` and, for the content space, ``near_content`` and
    ``near_style`` (the motif-copy measure)."""
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        key, own = resolve_key(s, batch.id, attributor), resolve_key(s, batch.id, None)
        records = load_batch(s, batch.id)
        if key == own or records.empty:
            return records.assign(attributor=key, near_content=np.nan, near_style=np.nan)
        answers = _answers(s, key, "stylization", [int(i) for i in records["stylization_id"]])
        controls = load_attribution_controls(s, batch.id, key)
    return _as_records(records, answers, controls, key)


def _as_records(records: pd.DataFrame, answers: pd.DataFrame, controls: pd.DataFrame, key: str) -> pd.DataFrame:
    out = records.drop(columns=["predicted", "probs", "near_content", "near_style"], errors="ignore").merge(
        answers.rename(columns={"subject_id": "stylization_id"}), on="stylization_id"
    )
    out["probs"] = out["probs"].map(_json)
    out["top3"] = out["probs"].map(_top3)
    out["p_content"] = [_prob(p, a) for p, a in zip(out["probs"], out["content_artist"])]
    out["p_style"] = [_prob(p, a) for p, a in zip(out["probs"], out["style_artist"])]
    out["outcome"] = [_outcome(*t) for t in zip(out["predicted"], out["content_artist"], out["style_artist"])]
    out["arm"] = out["outcome"].map(lambda o: "same" if o == "same" else "cross")
    out["answers"], out["predicted_half"], out["checkpoint_sha256"] = None, None, key
    by_image = {int(r.image_id): r for r in controls.itertuples()}

    def control(image_col: str, field: str, artist_col: str | None = None) -> list:
        values = []
        for i, a in zip(out[image_col], out[artist_col] if artist_col else out[image_col]):
            r = by_image.get(int(i))
            if r is None:
                values.append(False if field == "correct" else np.nan if artist_col else None)
            else:
                values.append(_prob(r.probs, a) if artist_col else getattr(r, field))
        return values

    out["content_correct"] = control("content_image_id", "correct")
    out["style_correct"] = control("style_image_id", "correct")
    out["content_control_predicted"] = control("content_image_id", "predicted")
    out["style_control_predicted"] = control("style_image_id", "predicted")
    for col in ("content_correct", "style_correct"):
        out[col] = out[col].astype(bool)
    out["content_control_p_content"] = control("content_image_id", "probs", "content_artist")
    out["content_control_p_style"] = control("content_image_id", "probs", "style_artist")
    out["style_control_p_style"] = control("style_image_id", "probs", "style_artist")
    out["attributor"] = key
    out = out[[*records.columns, *(c for c in out.columns if c not in records.columns)]]  # load_batch's order first
    return out.sort_values(["level", "content_image_id", "style_image_id"], kind="stable").reset_index(drop=True)


# The export's fields that belong to whoever answered: an attributor's export carries its own in their place.
_ANSWER_FIELDS = (
    "predicted",
    "probs",
    "top3",
    "p_content",
    "p_style",
    "outcome",
    "correct",
    "answers",
    "predicted_half",
)


def export_attributed(source: Any, batch_ref: str, attributor: str | None = None) -> pd.DataFrame:
    """``records.export_frame``'s table with ``attributor``'s answers in place of the batch classifier's: every
    stylization and matched control it answered (the others are left out, as in ``load_attributions``), its named
    artist, probabilities, outcome or whether the control is recognised, and an ``attributor`` column. The batch's
    own classifier (None, 'own') gives ``export_frame``'s table with that column added."""
    frame = export_frame(source, batch_ref)
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        key = resolve_key(s, batch.id, attributor)
        if key == resolve_key(s, batch.id, None):
            return frame.assign(attributor=key)
        ids = {r: [int(i) for i in frame.loc[frame["record"] == r, "id"]] for r in ("stylization", "control")}
        answers = pd.concat(
            [_answers(s, key, r, ids[r]).assign(record=r) for r in ("stylization", "control")], ignore_index=True
        )
    out = frame.drop(columns=[c for c in _ANSWER_FIELDS if c in frame]).merge(
        answers.rename(columns={"subject_id": "id"}), on=["record", "id"]
    )
    probs = out["probs"].map(_json)
    styl = out["record"] == "stylization"
    out["top3"] = probs.map(lambda p: json.dumps(_top3(p)))
    out["p_content"] = [_prob(p, a) if st else np.nan for p, a, st in zip(probs, out["content_artist"], styl)]
    out["p_style"] = [_prob(p, a) if st else np.nan for p, a, st in zip(probs, out["style_artist"], styl)]
    out["outcome"] = [
        _outcome(*t) if st else None
        for *t, st in zip(out["predicted"], out["content_artist"], out["style_artist"], styl)
    ]
    out["correct"] = [None if st else bool(p == lab) for p, lab, st in zip(out["predicted"], out["label"], styl)]
    out["probs"] = probs.map(lambda p: json.dumps(p, sort_keys=True))
    # The batch classifier's identity would misname whose answers these are.
    out["checkpoint_sha256"], out["classifier_run_id"], out["attributor"] = None, None, key
    return out.sort_values(["record", "id"], ascending=[False, True], kind="stable").reset_index(drop=True)


def paired(a: pd.DataFrame, b: pd.DataFrame, condition: str = "both") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two attributors' records on the cross-artist stylizations both answered and both keep under ``condition``
    (each under its own controls); refused in one line when they share none."""
    key_a, key_b = _key(a), _key(b)
    shared = set(a["stylization_id"]) & set(b["stylization_id"])
    if not shared:
        raise ConfigError(f"attributors {key_a} and {key_b} share no works on this batch: nothing to compare")
    ka, kb = kept(a, condition), kept(b, condition)
    both = shared & set(ka["stylization_id"]) & set(kb["stylization_id"])
    if not both:
        raise ConfigError(f"attributors {key_a} and {key_b} keep no work in common under --condition {condition}")
    ka, kb = ka[ka["stylization_id"].isin(both)], kb[kb["stylization_id"].isin(both)]
    order = ["level", "content_image_id", "style_image_id", "stylization_id"]
    return ka.sort_values(order).reset_index(drop=True), kb.sort_values(order).reset_index(drop=True)


def _key(records: pd.DataFrame) -> str:
    return str(records["attributor"].iloc[0]) if "attributor" in records and len(records) else "?"


def compare_rates(a: pd.DataFrame, b: pd.DataFrame, condition: str = "both") -> pd.DataFrame:
    """Per level: each attributor's style rate and their difference (A − B) on the same stylizations, with the
    jackknife over images (``clustered.contrasts`` with arms = attributor: the comparison is paired)."""
    ka, kb = paired(a, b, condition)
    key_a, key_b = _key(a), _key(b)
    out = []
    for level, pa in ka.groupby("level", sort=True):
        pb = kb[kb["level"] == level]
        ya, yb = (pa["outcome"] == "style").to_numpy(float), (pb["outcome"] == "style").to_numpy(float)
        content = [*pa["content_image_id"], *pb["content_image_id"]]
        style = [*pa["style_image_id"], *pb["style_image_id"]]
        arms = [key_a] * len(pa) + [key_b] * len(pb)
        diff = clustered.contrasts(np.concatenate([ya, yb]), arms, content, style, [(key_a, key_b)])[(key_a, key_b)]
        ra = clustered.rate(ya, pa["content_image_id"], pa["style_image_id"])
        rb = clustered.rate(yb, pb["content_image_id"], pb["style_image_id"])
        out.append(
            {
                "level": level, "n": len(pa), "content_images": pa["content_image_id"].nunique(),
                "style_images": pa["style_image_id"].nunique(), "attributor_a": key_a, "attributor_b": key_b,
                "style_a": ra.value, "style_a_low": ra.low, "style_a_high": ra.high,
                "style_b": rb.value, "style_b_low": rb.low, "style_b_high": rb.high,
                "difference": diff.value, "difference_low": diff.low, "difference_high": diff.high,
                "p": diff.p_value, "note": diff.note, "condition": condition,
            }
        )  # fmt: skip
    return pd.DataFrame(out)


def _log_d50_leave_out(data_a: pd.DataFrame, data_b: pd.DataFrame, fit_a, fit_b):
    """leave_out(M) for ``clustered.jackknife``: log d50_A − log d50_B without each unit, from each fit's one-step
    leave-outs on its own rows (the stacked rows' first part is A's)."""

    def design(d: pd.DataFrame):
        return np.column_stack([np.ones(len(d)), np.log(d["level"].to_numpy(float))]), d["y"].to_numpy(float)

    la, lb, na = one_step(*design(data_a), fit_a), one_step(*design(data_b), fit_b), len(data_a)

    def leave_out(M: np.ndarray) -> np.ndarray | None:
        ta, tb = la(M[:na]), lb(M[na:])
        if ta is None or tb is None or np.any(ta[:, 1] <= 0) or np.any(tb[:, 1] <= 0):
            return None
        return (-ta[:, 0] / ta[:, 1] + tb[:, 0] / tb[:, 1])[:, None]

    return leave_out


def d50_ratio(a: pd.DataFrame, b: pd.DataFrame, condition: str = "both") -> pd.DataFrame:
    """Per outcome ('named', 'probs'): each attributor's d50 on the same stylizations (doses > 0) and their ratio
    d50_A / d50_B with a 95 % interval: the jackknife over images (either role) of log d50_A − log d50_B, t with
    G − 1 df, exponentiated. No ratio where a fit fails or a slope is not positive (no crossing to compare)."""
    ka, kb = paired(a, b, condition)
    ka, kb = (k[pd.to_numeric(k["level"], errors="coerce") > 0] for k in (ka, kb))
    out = []
    for outcome in D50_OUTCOMES:
        row = {"outcome": outcome, "attributor_a": _key(a), "attributor_b": _key(b), "d50_a": np.nan, "d50_b": np.nan}
        row |= {"ratio": np.nan, "ratio_low": np.nan, "ratio_high": np.nan, "df": np.nan, "note": ""}
        da, db = _response(ka, outcome), _response(kb, outcome)
        fa, why_a = fit_glm(da) if len(da) else (None, "no answers")
        fb, why_b = fit_glm(db) if len(db) else (None, "no answers")
        if fa is None or fb is None:
            out.append(row | {"note": "; ".join(f"{k}: {w}" for k, w in (("A", why_a), ("B", why_b)) if w)})
            continue
        (pa, _), (pb, _) = fa, fb
        if pa[1] <= 0 or pb[1] <= 0:
            out.append(row | {"note": "a slope is not positive: the style artist never overtakes, no ratio"})
            continue
        log_ratio = -pa[0] / pa[1] + pb[0] / pb[1]
        row |= {"d50_a": float(np.exp(-pa[0] / pa[1])), "d50_b": float(np.exp(-pb[0] / pb[1]))}
        levels = pd.to_numeric(pd.concat([da["level"], db["level"]]))
        lo, hi = float(levels.min()), float(levels.max())
        if not all(lo <= d <= hi for d in (row["d50_a"], row["d50_b"])):
            # A d50 past the tested doses is the fitted line's extrapolation (1e-8, 1e+6 on real paintings); a
            # ratio of two such numbers says nothing about which attributor follows the style first.
            out.append(row | {"note": f"a d50 lies outside the doses tested ({lo:g}–{hi:g}): no ratio"})
            continue
        row["ratio"] = float(np.exp(log_ratio))
        content = [*da["content_image_id"], *db["content_image_id"]]
        style = [*da["style_image_id"], *db["style_image_id"]]
        note = clustered.few_clusters(content, style)
        jack = (
            clustered.jackknife(content, style, _log_d50_leave_out(da, db, pa, pb)) if clustered.stands(note) else None
        )
        if jack is None:
            out.append(row | {"note": note or "one image or pair carries a fit: no interval"})
            continue
        var, df = jack
        est = clustered.interval(log_ratio, float(np.sqrt(var[0, 0])) if var[0, 0] > 0 else np.nan, df, note)
        out.append(
            row | {"ratio_low": float(np.exp(est.low)), "ratio_high": float(np.exp(est.high)), "df": df, "note": note}
        )
    return pd.DataFrame(out)


def motif_copy(records: pd.DataFrame) -> pd.DataFrame:
    """The content space's motif-copy measure per level, on the cross-artist stylizations: the mean cosine of a
    work's relu4_2 features to its content image's and to its style image's, and the share of works closer to
    their style image than to their content image, with the jackknife interval over images. A share that rises
    with the dose says the works take on the style *image's* content (its motifs), not only its artist's style."""
    rows = records[(records["arm"] == "cross") & records["near_style"].notna()] if "near_style" in records else None
    if rows is None or rows.empty:
        return pd.DataFrame(columns=["level", "n", "near_content", "near_style", "closer_to_style"])
    out = []
    for level, part in rows.groupby("level", sort=True):
        closer = (part["near_style"] > part["near_content"]).to_numpy(float)
        est = clustered.rate(closer, part["content_image_id"], part["style_image_id"])
        out.append(
            {
                "level": level, "n": len(part), "near_content": float(part["near_content"].mean()),
                "near_style": float(part["near_style"].mean()), "closer_to_style": est.value,
                "closer_to_style_low": est.low, "closer_to_style_high": est.high, "note": est.note,
            }
        )  # fmt: skip
    return pd.DataFrame(out)
