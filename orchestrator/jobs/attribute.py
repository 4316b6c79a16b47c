"""More attributors on a stored batch: from `atelier attribute` to queued chunks (issue 31).

``submit_attribute`` resolves the batch and every attributor asked for (``core.attributors``), refuses in one
line before anything is written (no such batch; a classifier unfinished, of another dataset or the batch's own;
an embedding without its factory or file), then commits the attributor rows and one job per chunk of the
pictures that attributor has not answered yet (nor has in a queued or running job): asked again, it reuses what
is done. The jobs join the batch's group, so `atelier cancel BATCH` and `atelier retry BATCH` act on them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from core import messages
from core.artifacts import artifact_path
from core.attributors import FACTORY, NAME, AttributorSpec, attribute_params
from core.errors import ConfigError
from core.style_batch import StyleBatchSpec
from core.weights import WeightsRecord, sha256_file
from db import jobs
from db.engine import in_slices
from db.models import (
    Attribution,
    Attributor,
    Dataset,
    Image,
    Job,
    StyleBatch,
    StyleBatchPair,
    StyleControl,
    Stylization,
)
from orchestrator.jobs.lookups import _prefixed
from orchestrator.jobs.style_batch import pinned_classifier

DEFAULT_CHUNK = 500  # pictures per job: a classifier answers them in seconds, a VGG space in about a minute on a CPU


@dataclass(frozen=True)
class AttributeRequest:
    """`atelier attribute` as asked: the batch and the attributors (any mix of them)."""

    batch: str
    classifiers: tuple[int, ...] = ()
    style_space: bool = False
    content_space: bool = False
    embedding: str | None = None  # a name: registered with factory and weights, or registered before
    factory: str | None = None  # package.module:function (worker.ml.attributors.Embedding)
    weights: Path | None = None  # its safetensors file
    chunk: int = DEFAULT_CHUNK


@dataclass
class Planned:
    attributor: AttributorSpec
    stylizations: list[int]
    controls: list[int]
    done: int  # pictures answered before (or in flight), reused
    jobs: list[str] = field(default_factory=list)


def submit_attribute(lab, request: AttributeRequest) -> tuple[str, list[Planned]]:
    """Check everything, then commit the attributors and their chunks and send them; (batch id, what was planned)."""
    with lab.sessions() as s:
        batch = find_batch(s, request.batch)
        spec = StyleBatchSpec.from_dict(batch.spec)
        ds = s.get(Dataset, batch.dataset_id)
        who = resolve(lab, s, batch, spec, ds, request)
        works, controls = batch_subjects(s, batch, spec)
        plans = [plan(s, batch.id, w, works, controls) for w in who]
        batch_id, dataset_id = batch.id, ds.id
    if request.weights is not None:
        store_embedding_weights(
            lab, request.weights, next(p.attributor for p in plans if p.attributor.kind == "embedding")
        )
    celery = lab.celery()  # the broker must be reachable before anything is committed
    created: list[Job] = []
    with lab.sessions.begin() as s:
        for p in plans:
            if s.get(Attributor, p.attributor.key) is None:
                a = p.attributor
                s.add(Attributor(key=a.key, kind=a.kind, dataset_id=dataset_id, classes=list(a.classes), spec=a.spec))
                s.flush()
            created += chunk_jobs(s, lab, batch_id, p, request.chunk)
    messages.send(celery, created)
    return batch_id, plans


def find_batch(session, ref: str) -> StyleBatch:
    ids = _prefixed(session, StyleBatch.id, ref)
    if len(ids) != 1:
        raise ConfigError(f"no style batch {ref!r}" if not ids else f"batch prefix {ref!r} is ambiguous; give more")
    return session.get(StyleBatch, ids[0])


def chunk_jobs(session, lab, batch_id: str, p: Planned, chunk: int) -> list[Job]:
    subjects = [("s", i) for i in p.stylizations] + [("c", i) for i in p.controls]
    out = []
    for n, start in enumerate(range(0, len(subjects), chunk)):
        part = subjects[start : start + chunk]
        params = attribute_params(
            batch_id, p.attributor, [i for k, i in part if k == "s"], [i for k, i in part if k == "c"], n
        )
        job = jobs.new_job("attribute", params, queue="gpu", max_attempts=lab.settings.max_attempts)
        job.group_id = batch_id  # `atelier cancel|retry BATCH` reach its attribute jobs too
        session.add(job)
        out.append(job)
        p.jobs.append(job.id)
    session.flush()
    return out


def batch_subjects(session, batch: StyleBatch, spec: StyleBatchSpec) -> tuple[list[tuple], list[int]]:
    """The batch's stylizations (id, content image, style image) and its matched controls' ids: those of its own
    classifier's checkpoint at its size, for the images its pairs name."""
    works = session.execute(
        select(Stylization.id, Stylization.content_image_id, Stylization.style_image_id)
        .join(StyleBatchPair, StyleBatchPair.pair_hash == Stylization.pair_hash)
        .where(StyleBatchPair.batch_id == batch.id)
        .order_by(Stylization.id)
    ).all()
    images = sorted({w.content_image_id for w in works} | {w.style_image_id for w in works})
    sha = spec.classifier_sha256
    controls: list[int] = []
    for part in in_slices(images):
        q = select(StyleControl.id).where(
            StyleControl.classifier_run_id == batch.classifier_run_id,
            StyleControl.size == spec.style.size,
            StyleControl.image_id.in_(part),
            StyleControl.checkpoint_sha256 == sha if sha else StyleControl.checkpoint_sha256.is_(None),
        )
        controls += session.scalars(q).all()
    return list(works), sorted(controls)


def plan(session, batch_id: str, who: AttributorSpec, works, controls: list[int]) -> Planned:
    """What ``who`` still has to answer: not answered, and not in a queued or running chunk of it."""
    answered = set(
        session.execute(select(Attribution.subject, Attribution.subject_id).where(Attribution.attributor == who.key))
    )
    busy = session.scalars(
        select(Job.params).where(
            Job.kind == "attribute", Job.group_id == batch_id, Job.status.in_(("queued", "running"))
        )
    ).all()
    for params in busy:
        params = json.loads(params) if isinstance(params, str) else params
        if params["attributor"]["key"] == who.key:
            answered |= {("stylization", i) for i in params["stylizations"]} | {
                ("control", i) for i in params["controls"]
            }
    todo_s = [w.id for w in works if ("stylization", w.id) not in answered]
    todo_c = [c for c in controls if ("control", c) not in answered]
    done = len(works) + len(controls) - len(todo_s) - len(todo_c)
    return Planned(who, todo_s, todo_c, done)


def resolve(lab, session, batch: StyleBatch, spec: StyleBatchSpec, ds: Dataset, request: AttributeRequest):
    """Every attributor the request names, as specs; refused in one line when one cannot answer for this batch."""
    classes = list(ds.classes)
    out = [classifier_attributor(lab, session, batch, spec, ds, run_id) for run_id in request.classifiers]
    train = [
        [i, label]
        for i, label in session.execute(
            select(Image.id, Image.label)
            .where(Image.dataset_id == ds.id, Image.split == "train", Image.status == "ok")
            .order_by(Image.id)
        )
    ]
    if (request.style_space or request.content_space or request.embedding) and not train:
        raise ConfigError(f"dataset {ds.name} has no training images: a nearest-centroid attributor has no centroids")
    vgg = {
        "style": spec.to_dict()["style"],
        "vgg_weights": spec.vgg_weights.to_json(),
        "vgg_norm": spec.vgg_norm and spec.vgg_norm.to_dict(),
        "train": train,
    }
    for kind, wanted in (("style-space", request.style_space), ("content-space", request.content_space)):
        if wanted:
            out.append(AttributorSpec.of(kind, classes, vgg))
    if request.embedding:
        out.append(embedding_attributor(lab, session, ds, request, spec.style.size, train))
    if not out:
        raise ConfigError("name an attributor: --classifier RUN, --style-space, --content-space or --embedding NAME")
    return out


def classifier_attributor(lab, session, batch: StyleBatch, spec: StyleBatchSpec, ds: Dataset, run_id: int):
    """A finished run (or grid cell) on the batch's dataset, pinned by its checkpoint's sha256."""
    run = pinned_classifier(session, run_id, ds.id)  # unfinished or of another dataset: one line
    sha = sha256_file(artifact_path(lab.settings.artifacts, run.checkpoint_path))
    if run.id == batch.classifier_run_id and sha == spec.classifier_sha256:
        raise ConfigError(f"run {run_id} is batch {batch.id[:8]}'s own classifier: its answers are already stored")
    if run.config.get("num_classes") not in (None, len(ds.classes)):
        raise ConfigError(
            f"run {run_id} names {run.config['num_classes']} classes, dataset {ds.name} has {len(ds.classes)}"
        )
    return AttributorSpec.of("classifier", list(ds.classes), {"run_id": run.id, "checkpoint_sha256": sha})


def embedding_attributor(lab, session, ds: Dataset, request: AttributeRequest, size: int, train: list):
    """A registered embedding: named with its factory and safetensors file, or by a name registered before."""
    name = request.embedding
    if not NAME.match(name):
        raise ConfigError(f"embedding name {name!r}: lowercase letters, digits, - and _, at most 40, first a letter")
    if request.factory is None and request.weights is None:
        known = session.scalars(
            select(Attributor).where(Attributor.kind == "embedding", Attributor.dataset_id == ds.id)
        ).all()
        known = [a for a in known if a.spec.get("name") == name]
        if not known:
            raise ConfigError(f"no embedding {name!r} registered on {ds.name}: give --factory and --weights")
        factory, weights = known[-1].spec["factory"], known[-1].spec["weights"]
    elif request.factory is None or request.weights is None:
        raise ConfigError("--embedding registers a network with both --factory MODULE:FUNCTION and --weights FILE")
    else:
        if not FACTORY.match(request.factory):
            raise ConfigError(f"--factory {request.factory!r}: give package.module:function")
        factory, weights = request.factory, embedding_record(name, request.weights).to_json()
    spec = {"name": name, "factory": factory, "weights": weights, "size": size, "train": train}
    return AttributorSpec.of("embedding", list(ds.classes), spec)


def embedding_record(name: str, path: Path) -> WeightsRecord:
    """The record of a safetensors file (its header checked here, its tensors read only by the worker)."""
    try:
        with path.open("rb") as f:
            n = int.from_bytes(f.read(8), "little")  # safetensors: a little-endian header length, then JSON
            if not 0 < n < 100_000_000:
                raise ValueError(n)
            json.loads(f.read(n))
    except (OSError, ValueError):
        raise ConfigError(f"--weights {path}: not a readable safetensors file") from None
    sha = sha256_file(path)
    return WeightsRecord(name, sha, f"embeddings/{sha}.safetensors")


def store_embedding_weights(lab, source: Path, who: AttributorSpec) -> None:
    """Copy the file under the artifacts root, where every worker reads it (and checks its sha256)."""
    target = artifact_path(lab.settings.artifacts, who.spec["weights"]["path"])
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)
