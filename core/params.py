"""The params of every kind of job, built in one place, and their canonical form.

The CLI (``orchestrator.jobs.submit``) and the worker's sweep follow-ups (``worker.followups``)
build job params only through these functions; ``worker.payload`` checks what they build
against its schemas before a worker acts on a row. A train job's params name no run: its
run is the row whose ``runs.job_id`` names the job.

``canonical`` is what ``db.jobs.params_hash`` hashes: equal numbers written differently
(1 and 1.0, 1e-4 and 0.0001) look the same, so an identical finished job is found again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from core.artifacts import features_path
from core.config import TrainConfig
from core.errors import ConfigError
from core.inspection import inspect_folder
from core.style_batch import StyleBatchSpec, StylePair
from core.weights import WeightsRecord

# Ids, seeds and counts live in 32-bit signed integer columns: the CLI, the worker's checks and the id
# lookups all bound them by this one number.
MAX_INT = 2**31 - 1

# (kind, params) -> hex digest: db.jobs.params_hash, passed in (core imports nothing of the store).
Hasher = Callable[[str, dict], str]


def train_params(dataset: str, dataset_id: int, cfg: TrainConfig, weights: WeightsRecord) -> dict:
    """One training run of ``cfg`` on a dataset, its backbone starting from ``weights`` (which its config names)."""
    cfg = replace(cfg, weights=weights.name)
    return {
        "dataset": dataset,
        "dataset_id": dataset_id,
        "arch": cfg.arch,
        "config": cfg.to_json(),
        "weights": weights.to_json(),
    }


def cell_params(
    dataset: str, dataset_id: int, cfg: TrainConfig, weights: WeightsRecord, cell: int, features: str | None = None
) -> dict:
    """Grid cell ``cell`` of a sweep: a training run; in feature-extract mode it trains its head on the
    ``features`` file its features job writes (see ``features_params``)."""
    params = {**train_params(dataset, dataset_id, cfg, weights), "cell": cell}
    if features is not None:
        params["features"] = features
    return params


def features_params(dataset_id: int, cfg: TrainConfig, weights: WeightsRecord, hasher: Hasher) -> dict:
    """The backbone run once over a dataset for every feature-extract cell sharing ``cfg``'s image size,
    augmentation, views and features seed; its output file is named by the hash of the rest."""
    key = {
        "dataset_id": dataset_id,
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "augment": cfg.augment,
        "views": cfg.views,
        "weights": weights.to_json(),
        "seed": cfg.features_seed,
    }
    return {**key, "output": features_path(hasher("features", key)).as_posix()}


def finetune_params(
    dataset: str,
    dataset_id: int,
    cell_config: TrainConfig,
    cell: int,
    init_head: str,
    lr_scale: float,
    weights: WeightsRecord | None,
) -> dict:
    """A sweep's follow-up: a finished cell trained again end to end from its trained head (``init_head``)
    at its lr x ``lr_scale``. ``weights``: the backbone the cell started from; None for cells written before
    weights were recorded, whose follow-up then carries no record either (as the cell did)."""
    # End to end on images, augmented on the fly: no stored feature views.
    cfg = replace(cell_config, mode="fine-tune", lr=cell_config.lr * lr_scale, views=1, features_seed=0)
    params = {
        "dataset": dataset,
        "dataset_id": dataset_id,
        "arch": cfg.arch,
        "config": cfg.to_json(),
        "init_head": init_head,
        "cell": cell,
    }
    if weights is not None:
        params["weights"] = weights.to_json()
    return params


def stylize_params(
    batch_id: str, spec: StyleBatchSpec, pairs: list[StylePair], chunk: int, device_batch: int | None
) -> dict:
    """Chunk ``chunk`` of style batch ``batch_id``: ``pairs`` to stylize and classify, ``device_batch`` of them
    optimised together (None: as many as the worker's device fits). A raw-beta chunk's ``doses`` is null: its
    pairs carry their betas. ``core.style_batch.StyleChunk.from_dict`` reads it back."""
    return {
        "batch_id": batch_id,
        "classifier_run_id": spec.classifier_run_id,
        "classifier_sha256": spec.classifier_sha256,
        "doses": spec.treatment.to_dict()["doses"],
        "style": asdict(spec.style),
        "vgg_weights": spec.vgg_weights.to_json(),
        "vgg_norm": spec.vgg_norm and spec.vgg_norm.to_dict(),
        "pairs": [q.to_dict(spec.treatment) for q in pairs],
        "device_batch": device_batch,
        "dataset": spec.dataset,
        "chunk": chunk,
    }


def inspect_params(key: dict, hasher: Hasher) -> dict:
    """The feature pass behind a report (``core.inspection``): ``key`` from ``inspect_key``, its output
    folder named by the hash of the key, so the same report asked again finds the finished job's files."""
    return {**key, "output": inspect_folder(hasher("inspect", key)).as_posix()}


def clean_float(x: float) -> float:
    """Round away binary noise (12 significant digits): 0.1 + 0.2 is 0.3, not 0.30000000000000004."""
    cleaned = float(f"{x:.12g}")
    return 0.0 if cleaned == 0 else cleaned  # no -0.0


def canonical(value: Any) -> Any:
    """JSON-ready and normalised: equal numbers look the same (1 == 1.0, 1e-4 == 0.0001 == 0.1**4 rounded)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"parameter value {value!r} is not a finite number")
        if value.is_integer():
            return int(value)
        value = clean_float(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"parameter names must be strings, got {sorted(map(repr, value))}")
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    raise TypeError(f"cannot hash a parameter of type {type(value).__name__}: {value!r}")
