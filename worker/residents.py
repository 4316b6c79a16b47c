"""What a worker's jobs read from the store and the artifacts, and keep in the worker's child between jobs.

A dataset's image list and its uint8 cache are shared by the train, features and inspect jobs; a run's
classifier by the stylize, inspect and attribute jobs; a batch's style VGG by the stylize and attribute jobs.
Each job module imports them from here, so no job module borrows from another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from sqlalchemy import select

from core.artifacts import artifact_path
from core.config import TrainConfig
from core.errors import ConfigError
from core.style_batch import StyleChunk
from core.weights import WeightsRecord, sha256_file
from db.models import Dataset, Image, Job, Run
from worker import child
from worker.child import file_key
from worker.lifecycle import JobContext, require_row
from worker.ml.cache import cached_images, keys_digest
from worker.ml.checkpoint import atomic_save
from worker.ml.classify import Classifier
from worker.ml.compiled import compile_in_place
from worker.ml.models import build_model
from worker.ml.style import VGGFeatures, build_vgg, from_pil, mean_activation_scales
from worker.weights_store import local_file


@dataclass
class DatasetImages:
    root: Path
    classes: list[str]
    ids: list[int]
    paths: list[str]
    labels: list[int]
    splits: list[str]


def load_dataset_images(session, dataset_id: int) -> DatasetImages:
    dataset = require_row(session, Dataset, dataset_id, "dataset")
    rows = session.execute(
        select(Image.id, Image.path, Image.label, Image.split)
        .where(Image.dataset_id == dataset_id, Image.status == "ok")
        .order_by(Image.id)
    ).all()
    index = {c: i for i, c in enumerate(dataset.classes)}
    return DatasetImages(
        root=Path(dataset.root),
        classes=list(dataset.classes),
        ids=[r.id for r in rows],
        paths=[r.path for r in rows],
        labels=[index[r.label] for r in rows],
        splits=[r.split for r in rows],
    )


def cache_path(artifacts: Path, dataset_id: int, size: int) -> Path:
    return artifacts / "cache" / f"dataset-{dataset_id}" / f"{size}px.safetensors"


def resident_images(ctx: JobContext, dataset_id: int, data: DatasetImages, size: int) -> torch.Tensor:
    """The dataset's uint8 cache at ``size``, built once; kept in the child between jobs (read-only: splits
    index copies out of it), keyed by its image list."""
    keys = [f"{i}:{p}" for i, p in zip(data.ids, data.paths)]
    path = cache_path(ctx.artifacts, dataset_id, size)
    return child.resident().get(
        "images", (str(path), keys_digest(keys)), lambda: cached_images(path, data.root, data.paths, keys, size)
    )


def load_classifier(session, run: Run, classes: list[str], artifacts: Path, device: torch.device) -> Classifier:
    """A run's best checkpoint as a Classifier: a full run, or a grid cell's head on its features job's backbone."""
    if not run.checkpoint_path:
        raise ConfigError(f"classifier run {run.id} has no checkpoint (it has not finished an epoch)")
    job = session.get(Job, run.job_id)
    cfg = TrainConfig.from_json(run.config)
    path = artifact_path(artifacts, run.checkpoint_path)
    state = load_file(str(path))
    sha = sha256_file(path)  # what answered, on the record of every control and stylization
    if "features" not in job.params:
        # The checkpoint holds every weight, backbone included: the ImageNet file it started from is not needed.
        model = build_model(replace(cfg.model_config(), weights=None))
        model.load_state_dict(state)
        return Classifier(model.to(device).eval(), cfg, classes, device, sha256=sha)
    # A feature-extract grid cell: its checkpoint is the head; the backbone is what its features job ran.
    features_job = session.get(Job, job.depends_on) if job.depends_on else None
    if features_job is None:
        raise ConfigError(f"grid cell run {run.id} has lost its features job: its backbone is unknown")
    weights = WeightsRecord.from_json(features_job.params.get("weights"))
    torch.manual_seed(features_job.params.get("seed", 0))  # as the features job did: random init is rebuilt exactly
    model = build_model(cfg.model_config(), local_file(artifacts, weights))
    model.head.load_state_dict(state)
    return Classifier(model.head.to(device).eval(), cfg, classes, device, backbone=model.backbone.eval(), sha256=sha)


def resident_classifier(session, run: Run, classes: list[str], artifacts: Path, device) -> Classifier:
    """``load_classifier``, kept in the worker's child for the next chunk: keyed by the run and its checkpoint."""
    if not run.checkpoint_path:
        return load_classifier(session, run, classes, artifacts, device)  # one line: it has no checkpoint
    key = (run.id, *file_key(artifact_path(artifacts, run.checkpoint_path)), str(device))
    return child.resident().get("classifier", key, lambda: load_classifier(session, run, classes, artifacts, device))


def style_vgg(ctx: JobContext, chunk: StyleChunk, device, picture) -> VGGFeatures:
    """The VGG the batch names, by sha256, rescaled by the batch's mean-activation normalisation. ``chunk``: a
    stylize chunk, or anything with its ``style``, ``vgg_weights``, ``vgg_identity`` and ``vgg_norm`` (the attribute
    job's VGG spaces, which must be the very network the batch optimised against).

    The factors are computed once per key (weights, images, size) by whichever chunk needs them first and
    kept under the artifacts root, so every chunk of a batch, and every batch with that key, optimises
    against the very same network. The rescaled VGG stays in the worker's child for the chunks after it.
    """
    cfg, norm = chunk.style, chunk.vgg_norm
    key = (cfg.vgg, chunk.vgg_identity, cfg.pool, norm.key if norm else None, str(device))
    return child.resident().get("vgg", key, lambda: _build_style_vgg(ctx, chunk, device, picture))


def _build_style_vgg(ctx: JobContext, chunk: StyleChunk, device, picture) -> VGGFeatures:
    cfg, norm = chunk.style, chunk.vgg_norm
    torch.manual_seed(cfg.seed)  # random weights (only when asked for) are drawn from the style seed
    vgg = build_vgg(cfg.vgg, local_file(ctx.artifacts, chunk.vgg_weights), device, cfg.pool)
    if norm:
        path = ctx.artifact(Path("vgg-norm") / f"{norm.key}.safetensors")
        if path.is_file():
            scales = load_file(str(path))
        else:
            ctx.progress(0.0, f"normalising {cfg.vgg} on {len(norm.images)} images")
            scales = mean_activation_scales(vgg, [from_pil(picture(i)) for i in norm.images])
            images = json.dumps(list(norm.images))
            atomic_save(scales, path, {"vgg": cfg.vgg, "images": images, "size": str(cfg.size)})
        vgg.rescale(scales)
    compile_in_place(vgg, ctx.settings.compile, device)  # once per child: the VGG stays in its cache
    return vgg
