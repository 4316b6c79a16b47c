"""Reading a style batch from the store: finding it by id prefix, what produced it, its counts and totals.

`atelier results attribution` and the batch report read a batch the same way, so both take these from here; the
numbers themselves come from the analysis package.
"""

from __future__ import annotations

from sqlalchemy import func, select

from core import weights as names
from core.errors import ConfigError
from db.models import Run, StyleBatch, StyleBatchPair, StyleControl, Stylization


def find_batch(session, ref: str) -> StyleBatch:
    batches = session.scalars(select(StyleBatch).where(StyleBatch.id.startswith(ref)).limit(2)).all()
    if len(batches) != 1:
        raise ConfigError(f"no style batch {ref!r}" if not batches else f"batch prefix {ref!r} is ambiguous")
    return batches[0]


def describe_batch(batch: StyleBatch, run: Run, k: int) -> list[str]:
    """What produced the numbers: the classifier and its weights, the style transfer and its weights."""
    st, vgg = batch.spec["style"], names.WeightsRecord.from_json(batch.spec.get("vgg_weights"))
    norm = batch.spec.get("vgg_norm")
    lines = [
        f"classifier: run {run.id} ({run.arch}, {run.config.get('mode')}, {k} artists), "
        f"weights {names.describe(run.weights, run.weights_sha256)}",
        f"style transfer: Gatys et al. with loss {st['loss']}, {st['pool']} pooling, {st['init']} init, "
        f"{st['optimizer']} {st['steps']} steps, {st['size']} px long side, α = {st['content_weight']:g}; "
        f"VGG {st['vgg']} weights {vgg.label()}, "
        + (f"normalised to mean activation 1 on {len(norm['images'])} train images" if norm else "not normalised"),
    ]
    if names.warns_random(run.arch, run.weights):
        lines.append(names.random_warning(f"classifier run {run.id}", run.arch))
    if vgg.is_random:
        lines.append(names.random_warning("the style VGG", st["vgg"]))
    return lines


def batch_totals(session, batch_id: str) -> dict[str, int]:
    """How many stylizations a batch asked for, and how many of them are done, cross-artist and same-artist."""
    same = (Stylization.outcome == "same").label("same")
    done = {
        r["same"]: r["n"]
        for r in session.execute(
            select(same, func.count().label("n"))
            .join(StyleBatchPair, StyleBatchPair.pair_hash == Stylization.pair_hash)
            .where(StyleBatchPair.batch_id == batch_id)
            .group_by(same)
        ).mappings()
    }
    asked = session.scalar(select(func.count()).select_from(StyleBatchPair).where(StyleBatchPair.batch_id == batch_id))
    # SQLite answers the comparison with 0 / 1, PostgreSQL with False / True: equal keys either way.
    return {"asked": asked, "cross": done.get(False, 0), "same": done.get(True, 0)}


def control_paths(session, run_id: int, size: int) -> dict[int, str]:
    """Image id -> the PNG of its matched control, as the classifier saw it."""
    return {
        c.image_id: c.image_path
        for c in session.scalars(
            select(StyleControl).where(StyleControl.classifier_run_id == run_id, StyleControl.size == size)
        )
    }
