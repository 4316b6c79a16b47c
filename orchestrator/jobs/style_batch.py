"""A style batch from request to queued chunks: the one path `atelier stylize` and `atelier demo` both take.

``StyleBatchRequest`` is what the person asked for, typed, built once from the options. ``submit_style_batch``
reads and checks everything first (the dataset, the pinned classifier, the pairs, the VGG's weights and its
normalisation images), builds the batch's ``core.style_batch.StyleBatchSpec`` once, names every stylization by
its hash (``plan_pairs``) and only then commits the batch and sends its chunks (``submit_batch``): a bad input
is one line and leaves no row behind.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select

from core import messages
from core import weights as names
from core.artifacts import artifact_path
from core.config import MAX_DEVICE_BATCH, StyleConfig
from core.errors import ConfigError
from core.params import stylize_params
from core.style_batch import Sampling, StyleBatchSpec, StylePair, Treatment, VggNorm
from core.weights import WeightsRecord, identity, sha256_file
from db import jobs
from db.engine import in_slices
from db.models import Image, Job, Run, StyleBatch, StyleBatchPair, Stylization
from orchestrator.jobs.lookups import get_dataset
from orchestrator.jobs.pairs import MODES, read_pairs, sample_pairs
from orchestrator.jobs.weights import resolve as resolve_weights

# Filters' mean activations for the normalisation, over this many train images drawn across every artist.
DEFAULT_NORM_IMAGES = 64


@dataclass(frozen=True)
class StyleBatchRequest:
    """A style batch as asked for: the spec's inputs before anything is looked up, and how to submit it."""

    dataset: str
    classifier_run: int
    style: StyleConfig
    treatment: Treatment
    sampling: Sampling = Sampling()
    vgg_weights: str = "imagenet"  # a --vgg-weights spec, resolved to a record before anything is written
    norm_images: int = DEFAULT_NORM_IMAGES  # 0: the VGG's weights as they are
    chunk: int = MAX_DEVICE_BATCH  # pairs per job
    device_batch: int | None = None  # pairs optimised together; None: what the worker's device fits


@dataclass(frozen=True)
class SubmittedBatch:
    batch_id: str
    spec: StyleBatchSpec
    pairs: int  # distinct (content, style) pairs
    stylizations: int  # pairs x levels
    job_ids: list[str]

    def summary(self) -> list[str]:
        """What the command prints: the batch in one line, and a warning when the VGG's weights are random."""
        spec = self.spec
        lines = [
            f"batch {self.batch_id}: {self.stylizations} stylizations ({self.pairs} pairs x "
            f"{len(spec.treatment.levels)} {spec.treatment.noun}) in {len(self.job_ids)} jobs; VGG {spec.style.vgg} "
            f"weights {spec.vgg_weights.label()}; classifier run {spec.classifier_run_id} "
            f"(checkpoint sha256 {(spec.classifier_sha256 or '')[:12]})"
        ]
        if spec.vgg_weights.is_random:
            lines.append(names.random_warning("the style VGG", spec.style.vgg))
        return lines


def submit_style_batch(lab, request: StyleBatchRequest) -> SubmittedBatch:
    """Check and resolve every input, build the batch's spec, then commit it and send its chunks."""
    with lab.sessions() as s:
        ds = get_dataset(s, request.dataset)
        run = pinned_classifier(s, request.classifier_run, ds.id)
        images = s.execute(
            select(Image.id, Image.path, Image.label, Image.split).where(
                Image.dataset_id == ds.id, Image.status == "ok"
            )
        ).all()
        dataset_id, checkpoint = ds.id, run.checkpoint_path
    pairs = choose_pairs(images, request.sampling, request.style.seed)
    # Resolved before anything is written: no cached weights (offline) is one line and no rows.
    vgg_record = resolve_weights(lab, request.style.vgg, request.vgg_weights)
    train = [(im.id, im.label) for im in images if im.split == "train"]
    spec = StyleBatchSpec(
        dataset=request.dataset,
        classifier_run_id=request.classifier_run,
        style=request.style,
        treatment=request.treatment,
        vgg_weights=vgg_record,
        vgg_norm=vgg_norm(vgg_record, request.style, train, request.norm_images),
        sampling=request.sampling,
        classifier_sha256=sha256_file(artifact_path(lab.settings.artifacts, checkpoint)),
    )
    todo = plan_pairs(pairs, spec)
    batch_id, job_ids = submit_batch(lab, dataset_id, spec, todo, request.chunk, request.device_batch)
    return SubmittedBatch(batch_id, spec, len(set(pairs)), len(todo), job_ids)


def pinned_classifier(session, run_id: int, dataset_id: int) -> Run:
    """The run that classifies: trained to the end (its best checkpoint is final), on this dataset."""
    run = session.get(Run, run_id)
    if run is None:
        raise ConfigError(f"no run {run_id}")
    job = session.get(Job, run.job_id)
    if job.status != "succeeded" or run.checkpoint_path is None:
        raise ConfigError(f"run {run_id} has not finished training (job {job.status}): its checkpoint may still change")
    if run.dataset_id != dataset_id:
        raise ConfigError(f"run {run_id} was trained on another dataset")
    return run


def choose_pairs(images, sampling: Sampling, seed: int) -> list[tuple[int, int]]:
    """The batch's (content, style) pairs: drawn per artist cell from the split, or read from a CSV file."""
    if sampling.pairs not in MODES:
        return read_pairs(Path(sampling.pairs), {im.path: im.id for im in images})
    by_artist: dict[str, list[int]] = {}
    for im in images:
        if im.split == sampling.split:
            by_artist.setdefault(im.label, []).append(im.id)
    return sample_pairs(by_artist, sampling.pairs, sampling.per_cell, seed=seed)


def vgg_norm(record: WeightsRecord, style: StyleConfig, train: list[tuple[int, str]], n: int) -> VggNorm | None:
    """The batch's VGG normalisation: ``n`` train images (seeded, drawn in turn from every artist, so no
    artist's filters dominate) and a key naming weights, images and size."""
    if n == 0:
        return None
    if not train:
        raise ConfigError("--norm-images needs images in the dataset's train split; give --norm-images 0 to skip")
    rng = random.Random(style.seed)
    by_artist: dict[str, list[int]] = {}
    for image_id, label in sorted(train):
        by_artist.setdefault(label, []).append(image_id)
    for ids in by_artist.values():
        rng.shuffle(ids)
    queues = [by_artist[a] for a in sorted(by_artist)]
    chosen: list[int] = []
    while len(chosen) < min(n, len(train)):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop())
    chosen.sort()
    what = {"vgg": style.vgg, "weights": identity(record, style.seed), "images": chosen, "size": style.size}
    what["normalisation"] = "compensated-capped-v2"  # factors from before the exact normalisation are not reused
    return VggNorm(hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32], tuple(chosen))


def pair_seed(content_id: int, style_id: int) -> int:
    """One seed per (content, style): a pair's levels start from the same noise, so the level is all that differs."""
    return int(hashlib.sha256(f"{content_id}:{style_id}".encode()).hexdigest()[:8], 16) >> 1  # fits an int32


def plan_pairs(pairs: list[tuple[int, int]], spec: StyleBatchSpec) -> list[StylePair]:
    """One stylization per (pair, level), each with the hash that finds an identical one done before; a pair
    named twice is stylized once. The classifier's checkpoint is part of every hash."""
    field = spec.treatment.field
    shared = {
        "style_cfg": spec.to_dict()["style"],
        "vgg_weights": spec.vgg_identity,
        "vgg_norm": spec.vgg_norm.key if spec.vgg_norm else None,
        "classifier": spec.classifier_run_id,
        "checkpoint": spec.classifier_sha256,
    }
    todo: dict[str, StylePair] = {}
    for content_id, style_id in pairs:
        seed = pair_seed(content_id, style_id)
        for level in spec.treatment.levels:
            key = {"content": content_id, "style": style_id, field: level, "seed": seed} | shared
            h = jobs.params_hash("pair", key)
            todo[h] = StylePair(content_id, style_id, level, seed, h)
    return list(todo.values())


def submit_batch(
    lab, dataset_id: int, spec: StyleBatchSpec, todo: list[StylePair], chunk: int, device_batch: int | None
) -> tuple[str, list[str]]:
    """Commit the batch, one job per chunk of pairs not stylized before and a row per pair; then send the jobs.

    Returns (batch id, job ids). Pair rows go in with one multi-row INSERT: 20,000 pairs are one short transaction.
    """
    celery = lab.celery()  # the broker must be reachable before anything is committed
    with lab.sessions.begin() as s:
        batch = StyleBatch(dataset_id=dataset_id, classifier_run_id=spec.classifier_run_id, spec=spec.to_dict())
        s.add(batch)
        s.flush()
        done = stylized(s, [q.hash for q in todo])
        fresh = [q for q in todo if q.hash not in done]
        created = [
            jobs.new_job(
                "stylize",
                stylize_params(batch.id, spec, fresh[start : start + chunk], start // chunk, device_batch),
                queue="gpu",
                max_attempts=lab.settings.max_attempts,
            )
            for start in range(0, len(fresh), chunk)
        ]
        for job in created:
            job.group_id = batch.id
        s.add_all(created)
        s.flush()  # the jobs exist before the pair rows that name them
        pair_rows = [{"batch_id": batch.id, "pair_hash": h, "job_id": None} for h in done]
        pair_rows += [
            {"batch_id": batch.id, "pair_hash": q["hash"], "job_id": job.id}
            for job in created
            for q in job.params["pairs"]
        ]
        if pair_rows:
            s.execute(insert(StyleBatchPair), pair_rows)
        batch_id = batch.id
    messages.send(celery, created)
    return batch_id, [j.id for j in created]


def stylized(session, hashes: list[str]) -> set[str]:
    """Those of the pair ``hashes`` some earlier batch already stylized."""
    done: set[str] = set()
    for part in in_slices(hashes):
        done.update(session.scalars(select(Stylization.pair_hash).where(Stylization.pair_hash.in_(part))))
    return done
