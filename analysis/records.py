"""A style batch's records as pandas DataFrames: one row per stylization, one per control.

Reads only (SELECTs through SQLAlchemy). ``load_batch`` takes the rows of the view ``attribution_pairs``
(the same join of stylizations and matched controls that the SQL views count) and adds what the view
does not carry: the stored probabilities of every class, the answers during the optimisation and the
controls' probabilities.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from analysis.names import CONDITION_TEXT, CONDITIONS, LEVEL_NAMES, OUTCOMES  # noqa: F401  (re-exported)
from core.errors import ConfigError
from db.models import Dataset, Run, StyleBatch, StyleBatchPair, StyleControl, Stylization


@contextmanager
def session_for(source: Any):
    """A read session from a Session (used as is), an Engine or Connection, or a database URL."""
    if isinstance(source, Session):
        yield source
        return
    if isinstance(source, str):
        from db.engine import make_engine

        engine = make_engine(source)
        try:
            with Session(engine) as s:
                yield s
        finally:
            engine.dispose()
        return
    if isinstance(source, Engine | Connection):
        with Session(source) as s:
            yield s
        return
    raise ConfigError(f"cannot read a batch from a {type(source).__name__}: give a Session, an Engine or a URL")


def find_batch(session: Session, ref: str) -> StyleBatch:
    """The batch whose id starts with ``ref`` (one line of error when none or several do)."""
    from sqlalchemy import String, cast

    batches = session.scalars(
        select(StyleBatch).where(cast(StyleBatch.id, String).startswith(ref, autoescape=True)).limit(2)
    ).all()
    if len(batches) != 1:
        raise ConfigError(f"no style batch {ref!r}" if not batches else f"batch prefix {ref!r} is ambiguous")
    return batches[0]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def batch_info(source: Any, batch_ref: str) -> dict:
    """What the analysis needs besides the rows: the batch id, its dataset's classes, the classifier run, the
    spec (doses or raw β), and the level's name ('dose' or 'β')."""
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        ds, run = s.get(Dataset, batch.dataset_id), s.get(Run, batch.classifier_run_id)
        spec = _json(batch.spec)
        return {
            "batch_id": batch.id,
            "dataset": ds.name,
            "classes": list(ds.classes),
            "run_id": run.id,
            "spec": spec,
            "treatment": "beta" if spec.get("doses") is None else "dose",
        }


def _controls(session: Session, run_id: int, size: int) -> pd.DataFrame:
    rows = session.execute(
        select(
            StyleControl.id.label("control_id"),
            StyleControl.image_id,
            StyleControl.label,
            StyleControl.predicted,
            StyleControl.correct,
            StyleControl.checkpoint_sha256,
            StyleControl.probs,
            StyleControl.top3,
            StyleControl.image_path,
            StyleControl.size,
            StyleControl.classifier_run_id,
        ).where(StyleControl.classifier_run_id == run_id, StyleControl.size == size)
    ).mappings()
    cols = ["control_id", "image_id", "label", "predicted", "correct", "checkpoint_sha256", "probs", "top3"]
    frame = pd.DataFrame([dict(r) for r in rows], columns=[*cols, "image_path", "size", "classifier_run_id"])
    frame["correct"] = frame["correct"].astype(bool)
    return frame


def load_controls(source: Any, batch_ref: str) -> pd.DataFrame:
    """Every matched control of the batch's classifier run at the batch's size: one row per (image, checkpoint),
    with its label, answer, whether it is correct and its probabilities ({artist: p})."""
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        return _controls(s, batch.classifier_run_id, _json(batch.spec)["style"]["size"])


NEAR_TIE = 0.1  # a top-2 probability margin below this makes the named answer a near-tie


def top2_margin(probs: Any) -> float:
    """The gap between the classifier's two largest probabilities ({artist: p}, or its JSON); NaN if unknown.
    Below ``NEAR_TIE`` the named answer is a near-tie that any small change of the picture can flip."""
    probs = _json(probs)
    if not isinstance(probs, dict) or len(probs) < 2:
        return float("nan")
    first, second = sorted(map(float, probs.values()), reverse=True)[:2]
    return first - second


def _prob(probs: Any, artist: str) -> float:
    probs = _json(probs)
    return float(probs[artist]) if isinstance(probs, dict) and artist in probs else float("nan")


def load_batch(source: Any, batch_ref: str) -> pd.DataFrame:
    """One row per stylization of the batch (cross-artist and same-artist): the rows of ``attribution_pairs``
    (images, artists, treatment, level, dose, β, outcome, p_content, p_style, predicted_half, the controls'
    answers) with ``probs``, ``answers``, ``steps_done`` and ``stop_reason`` (NaN / None where the row predates the
    record), and the controls' probabilities of the content and style artist:
    ``content_control_p_content``, ``content_control_p_style`` (how much the classifier already takes the content
    image for the style artist) and ``style_control_p_style``. ``pair`` is the (content image, style image) key
    that recurs across doses; ``arm`` is 'cross' or 'same'."""
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        view = pd.DataFrame([dict(r) for r in s.execute(text(ROWS_SQL), {"batch": batch.id}).mappings()])
        extra = pd.DataFrame(
            [
                dict(r)
                for r in s.execute(
                    select(
                        Stylization.pair_hash,
                        Stylization.id.label("stylization_id"),
                        Stylization.probs,
                        Stylization.answers,
                        Stylization.top3,
                        Stylization.steps_done,
                        Stylization.stop_reason,
                    )
                    .join(StyleBatchPair, StyleBatchPair.pair_hash == Stylization.pair_hash)
                    .where(StyleBatchPair.batch_id == batch.id)
                ).mappings()
            ],
            columns=["pair_hash", "stylization_id", "probs", "answers", "top3", "steps_done", "stop_reason"],
        )
        controls = _controls(s, batch.classifier_run_id, _json(batch.spec)["style"]["size"])
    if view.empty:
        return pd.DataFrame(columns=[*VIEW_COLUMNS, *DERIVED_COLUMNS])
    records = view.merge(extra, on="pair_hash", how="left")
    return _with_controls(records, controls)


def _with_controls(records: pd.DataFrame, controls: pd.DataFrame) -> pd.DataFrame:
    records = records.copy()
    for col in ("content_correct", "style_correct"):
        records[col] = records[col].astype("boolean").fillna(False).astype(bool)  # no control: not recognised
    records["arm"] = records["outcome"].map(lambda o: "same" if o == "same" else "cross")
    records["pair"] = list(zip(records["content_image_id"], records["style_image_id"]))

    def sha(v: Any) -> str | None:  # pandas reads a missing sha as NaN or None: both are "no checkpoint recorded"
        return None if v is None or (isinstance(v, float) and v != v) else str(v)

    by_key = {(int(r.image_id), sha(r.checkpoint_sha256)): r.probs for r in controls.itertuples()}

    def control_prob(image_col: str, artist_col: str) -> list[float]:
        return [
            _prob(by_key.get((int(i), sha(h))), a)
            for i, h, a in zip(records[image_col], records["checkpoint_sha256"], records[artist_col])
        ]

    records["content_control_p_content"] = control_prob("content_image_id", "content_artist")
    records["content_control_p_style"] = control_prob("content_image_id", "style_artist")
    records["style_control_p_style"] = control_prob("style_image_id", "style_artist")
    return records.sort_values(["level", "content_image_id", "style_image_id"], kind="stable").reset_index(drop=True)


ROWS_SQL = "SELECT * FROM attribution_pairs WHERE batch_id = :batch"


def kept_sql(condition: str) -> str:
    """The SQL of ``kept``: a batch's cross-artist rows whose controls pass ``condition``, as a reader reruns it."""
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    return " AND ".join([ROWS_SQL, "outcome <> 'same'", *CONDITIONS[condition]])


VIEW_COLUMNS = (
    "batch_id pair_hash content_image_id content_artist style_image_id style_artist treatment level dose balance "
    "content_weight style_weight steps size outcome predicted predicted_half p_content p_style checkpoint_sha256 "
    "content_correct style_correct content_control_predicted style_control_predicted loss_ratio image_path"
).split()
DERIVED_COLUMNS = (
    "stylization_id probs answers top3 steps_done stop_reason arm pair content_control_p_content content_control_p_style "
    "style_control_p_style"
).split()


def kept(records: pd.DataFrame, condition: str) -> pd.DataFrame:
    """The cross-artist rows whose matched controls pass ``condition`` (same-artist rows are their own arm)."""
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    mask = records["arm"] == "cross"
    for col in CONDITIONS[condition]:
        mask &= records[col]
    return records[mask]


def control_outcomes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct pair of ``rows``: what the classifier names for the unstylized content image, read as
    an outcome of the pair (content, style or other) — the control arm, on the same pairs as the treatment."""
    pairs = rows.drop_duplicates("pair").copy()
    predicted = pairs["content_control_predicted"]
    pairs["outcome"] = [
        "content" if p == c else "style" if p == s else "other"
        for p, c, s in zip(predicted, pairs["content_artist"], pairs["style_artist"])
    ]
    pairs["treatment"], pairs["level"] = "control", float("nan")
    return pairs


def export_frame(source: Any, batch_ref: str) -> pd.DataFrame:
    """Every stylization and every matched control of the batch with its full record, one table: ``record`` says
    which; JSON fields (probabilities, answers, top-3, the batch spec) as JSON text, so CSV and Parquet agree."""
    with session_for(source) as s:
        batch = find_batch(s, batch_ref)
        styl = pd.DataFrame(
            [
                {c.key: getattr(r, c.key) for c in Stylization.__table__.columns}
                for r in s.scalars(
                    select(Stylization)
                    .join(StyleBatchPair, StyleBatchPair.pair_hash == Stylization.pair_hash)
                    .where(StyleBatchPair.batch_id == batch.id)
                    .order_by(Stylization.id)
                )
            ]
        )
        controls = _controls(s, batch.classifier_run_id, _json(batch.spec)["style"]["size"])
        spec = json.dumps(_json(batch.spec), sort_keys=True)
        batch_id = batch.id
    styl.insert(0, "record", "stylization")
    if not styl.empty:
        styl["treatment"] = ["beta" if pd.isna(d) else "dose" for d in styl["dose"]]
    controls.insert(0, "record", "control")
    out = pd.concat([styl, controls.rename(columns={"control_id": "id"})], ignore_index=True, sort=False)
    out.insert(1, "export_batch_id", batch_id)
    out["batch_spec"] = spec
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, dict | list)).any():
            out[col] = out[col].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v)
    for col in ("created_at",):
        if col in out:
            out[col] = out[col].astype(str)
    return out
