"""The `attribute` job: one chunk of a stored batch's pictures, answered by one more attributor.

Nothing is stylized again. Each picture is the PNG the stylize job stored (a stylization, or a matched control:
the painting resized to the batch's long side, 8-bit), read back losslessly, so every attributor sees exactly
the pixels the batch's own classifier saw. A classifier answers through ``Classifier.probabilities`` (the crop
at its run's image size and its evaluation path, ``worker.ml.classify``), as the stylize job did; a space or an
embedding through ``worker.ml.attributors``: the nearest of the artists' centroids over the dataset's training
images, each resized to the batch's long side on the same path. A classifier's checkpoint is pinned: a file
with another sha256 than the attributor's key is refused.

Rows are keyed by (attributor, subject, subject id) and written per slice, idempotently, so a retried chunk
redoes only what it had not written.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_file
from sqlalchemy import select

from core.attributors import AttributorSpec
from core.config import StyleConfig
from core.errors import ConfigError
from core.style_batch import VggNorm
from core.weights import WeightsRecord, identity
from corpus.imageio import open_rgb
from db.models import Attribution, Dataset, Image, Run, StyleBatch, StyleControl, Stylization
from db.upsert import upsert
from worker import child
from worker.lifecycle import JobContext, require_row
from worker.ml.attributors import Centroids, GramEmbedding, PooledEmbedding, cosine, fit_centroids, load_embedding
from worker.ml.checkpoint import atomic_save
from worker.ml.style import resize_long_side
from worker.ml.train import pick_device
from worker.residents import resident_classifier, style_vgg
from worker.weights_store import local_file

SLICE = 32  # pictures answered and written together: a retry redoes at most this many
TRAIN_SLICE = 16  # training images embedded together while the centroids are fitted


def run_attribute(ctx: JobContext) -> None:
    p = ctx.params
    who = AttributorSpec.from_dict(p["attributor"])
    with ctx.sessions() as s:
        batch = require_row(s, StyleBatch, p["batch_id"], "style batch")
        works = s.execute(
            select(Stylization.id, Stylization.image_path, Stylization.content_image_id, Stylization.style_image_id)
            .where(Stylization.id.in_(p["stylizations"]))
            .order_by(Stylization.id)
        ).all()
        controls = s.execute(
            select(StyleControl.id, StyleControl.image_path).where(StyleControl.id.in_(p["controls"]))
        ).all()
        done = set(
            s.execute(select(Attribution.subject, Attribution.subject_id).where(Attribution.attributor == who.key))
        )
        device = pick_device()
        ready = prepare(ctx, s, who, device, works, batch.dataset_id)
    # Built out of the read session: fitting centroids reports progress, which writes.
    answer = ready if who.kind == "classifier" else space_answers(ctx, who, device, *ready)
    todo = [("stylization", w) for w in works if ("stylization", w.id) not in done]
    todo += [("control", c) for c in controls if ("control", c.id) not in done]  # a retried chunk skips them
    for start in range(0, len(todo), SLICE):
        part = todo[start : start + SLICE]
        pictures = [open_rgb(ctx.artifact(r.image_path)) for _, r in part]
        rows = [
            {"attributor": who.key, "subject": subject, "subject_id": r.id, "job_id": ctx.job_id, **a}
            for (subject, r), a in zip(part, answer(pictures, part))
        ]
        with ctx.write() as s:
            upsert(s, Attribution, rows, keys=("attributor", "subject", "subject_id"))
        ctx.progress((start + len(part)) / len(todo), f"{start + len(part)}/{len(todo)} pictures")


def prepare(ctx: JobContext, session, who: AttributorSpec, device, works, dataset_id: int):
    """What the answers need from the store: a classifier's answering function, or a space's dataset root and the
    paths of its training images and of the works' content and style images."""
    if who.kind == "classifier":
        return classifier_answers(ctx, session, who, device)
    root = Path(require_row(session, Dataset, dataset_id, "dataset").root)
    wanted = {int(i) for i, _ in who.spec["train"]} | set((who.spec.get("vgg_norm") or {}).get("images", ()))
    wanted |= {w.content_image_id for w in works} | {w.style_image_id for w in works}
    return root, dict(session.execute(select(Image.id, Image.path).where(Image.id.in_(sorted(wanted)))).all())


def space_answers(ctx: JobContext, who: AttributorSpec, device, root: Path, paths: dict[int, str]):
    """A function (pictures, [(subject, row)]) -> one answer per picture from the nearest centroid: the named
    artist, the probabilities, the distances, and in the content space the motif-copy measure."""
    size = who.spec["size"] if who.kind == "embedding" else who.spec["style"]["size"]

    def picture(image_id: int):
        """A painting on the batch's path: resized to its long side, 8-bit (as its controls were)."""
        return resize_long_side(open_rgb(root / paths[image_id]), size)

    embed, metric = embedding(ctx, who, device, picture)
    space = resident_centroids(ctx, who, embed, metric, picture)
    motif = who.kind == "content-space"
    sources: dict[int, torch.Tensor] = {}

    def answer(pictures, part) -> list[dict]:
        feats = embed(pictures)
        d = space.distances(feats)
        probs = space.probabilities(d)
        out = [
            {
                "predicted": who.classes[int(dk.argmin())],
                "probs": dict(zip(who.classes, (round(float(v), 6) for v in pk))),
                "distances": dict(zip(who.classes, (float(v) for v in dk))),
            }
            for dk, pk in zip(d, probs)
        ]
        if motif:
            near_source(out, feats, part, sources, lambda i: embed([picture(i)])[0], space)
        return out

    return answer


def near_source(out: list[dict], feats, part, sources: dict, features_of, space: Centroids) -> None:
    """The motif-copy measure: each stylization's cosine, in the content space, to its content image's features
    and to its style image's (controls have none)."""
    for a, f, (subject, r) in zip(out, feats, part):
        a["near_content"] = a["near_style"] = None
        if subject != "stylization":
            continue
        for col, image_id in (("near_content", r.content_image_id), ("near_style", r.style_image_id)):
            if image_id not in sources:
                sources[image_id] = features_of(image_id)
            a[col] = float(cosine(f[None], sources[image_id][None], space)[0])


def classifier_answers(ctx: JobContext, session, who: AttributorSpec, device):
    run = require_row(session, Run, who.spec["run_id"], "classifier run")
    classify = resident_classifier(session, run, list(who.classes), ctx.artifacts, device)
    if classify.sha256 != who.spec["checkpoint_sha256"]:
        raise ConfigError(
            f"classifier run {run.id}'s checkpoint is not the one {who.key} pins (sha256 {classify.sha256[:12]})"
        )

    def answer(pictures, part) -> list[dict]:
        probs = classify.probabilities(pictures)  # the crop at the run's size, its evaluation path
        return [
            {
                "predicted": classify.classes[int(pk.argmax())],
                "probs": dict(zip(classify.classes, (round(float(v), 6) for v in pk))),
            }
            for pk in probs
        ]

    return answer


def embedding(ctx: JobContext, who: AttributorSpec, device, picture):
    """The attributor's embedding and its metric: the batch's VGG (the one the transfer optimised against, kept in
    the child as the stylize job keeps it) for the spaces, or a registered network."""
    spec = who.spec
    if who.kind == "embedding":
        record = WeightsRecord.from_json(spec["weights"])

        def build():
            return load_embedding(spec["factory"], load_file(str(local_file(ctx.artifacts, record))), device)

        return child.resident().get("embedding", (who.key, str(device)), build), "cosine"
    style = StyleConfig(**spec["style"])
    record = WeightsRecord.from_json(spec["vgg_weights"])
    # style_vgg reads these four fields of a stylize chunk: the same key, hence the same resident VGG.
    source = SimpleNamespace(
        style=style, vgg_norm=VggNorm.from_dict(spec["vgg_norm"]), vgg_weights=record,
        vgg_identity=identity(record, style.seed),
    )  # fmt: skip
    vgg = style_vgg(ctx, source, device, picture)
    if who.kind == "style-space":
        return GramEmbedding(vgg, device, style.loss), "sqeuclidean"
    return PooledEmbedding(vgg, device), "cosine"


def resident_centroids(ctx: JobContext, who: AttributorSpec, embed, metric: str, picture) -> Centroids:
    """The artists' centroids over the training images the attributor names: fitted by the first chunk that
    needs them, kept under the artifacts root (so every chunk uses the same) and in the child."""
    path = ctx.artifact(who.centroids_file)

    def build() -> Centroids:
        if path.is_file():
            return Centroids.from_state(load_file(str(path)), list(who.classes), metric)
        train = [(int(i), who.classes.index(a)) for i, a in who.spec["train"]]
        ctx.progress(0.0, f"centroids of {len(who.classes)} artists over {len(train)} training images")
        batches = (
            ([picture(i) for i, _ in train[k : k + TRAIN_SLICE]], [c for _, c in train[k : k + TRAIN_SLICE]])
            for k in range(0, len(train), TRAIN_SLICE)
        )
        space = fit_centroids(embed, batches, list(who.classes), metric)
        atomic_save(space.to_state(), path, {"attributor": who.key, "metric": metric})
        return space

    return child.resident().get("centroids", who.key, build)
