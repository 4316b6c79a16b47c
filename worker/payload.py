"""What a job row's params must look like, checked before a worker acts on them.

The CLI writes well-formed params, but a row is only data: a hand-edited row, an
older client or a bug must end as one failed job with a one-line reason, never
as a traceback deep in PyTorch, a worker process eating all memory on a
10**12-pixel image, or a file written outside the artifacts root.

The schemas of the two config objects are derived from their dataclass fields,
so a new field is checked without touching this module; ``LIMITS`` adds the
bounds that keep one job from exhausting a worker.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from core.artifacts import artifact_path
from core.config import StyleConfig, TrainConfig
from core.errors import ConfigError
from core.params import MAX_INT
from core.style_batch import StyleChunk

BIG = MAX_INT  # ids and seeds fit a 32-bit signed integer column
# Upper bounds, generous for real experiments, small enough that no single job can exhaust a worker.
LIMITS = {
    "num_classes": (2, 100_000),
    "epochs": (1, 100_000),
    "batch_size": (1, 65_536),
    "image_size": (8, 8192),
    "plateau_patience": (0, 100_000),
    "early_stop_patience": (0, 100_000),
    "head_epochs": (0, 100_000),
    "finetune_epochs": (0, 100_000),
    "seed": (0, BIG),
    "steps": (1, 1_000_000),
    "size": (16, 8192),
    "history": (1, 1000),
    "views": (1, 256),
    "features_seed": (0, BIG),
}
TEXT = {"type": "string", "maxLength": 4096}
ID = {"type": "integer", "minimum": 1, "maximum": BIG}
COUNT = {"type": "integer", "minimum": 0, "maximum": BIG}
ARTIFACT = {"type": "string", "minLength": 1, "maxLength": 1024}  # where it may point is checked separately
# A batch id becomes a folder name: no separators, no dots, nothing to escape.
SAFE_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}
# core.weights.WeightsRecord: what a backbone starts from (null: random init, from rows older than it).
WEIGHTS = {
    "anyOf": [
        {"type": "null"},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "sha256", "path"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "sha256": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[0-9a-f]{64}$"}]},
                "path": {"anyOf": [{"type": "null"}, ARTIFACT]},
            },
        },
    ]
}
# Params keys holding a WeightsRecord, whose path must stay under the artifacts root too.
WEIGHTS_KEYS = ("weights", "vgg_weights")


def _field_schema(name: str, hint: Any) -> dict:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return {"anyOf": [_field_schema(name, h) for h in typing.get_args(hint)]}
    if hint is type(None):
        return {"type": "null"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        low, high = LIMITS.get(name, (-BIG, BIG))
        return {"type": "integer", "minimum": low, "maximum": high}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return TEXT
    if typing.get_origin(hint) is tuple:  # tuple[int, ...]: layer widths
        return {"type": "array", "maxItems": 16, "items": {"type": "integer", "minimum": 1, "maximum": 65_536}}
    raise TypeError(f"no schema for field {name}: {hint!r}")


def dataclass_schema(cls) -> dict:
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    return {
        "type": "object",
        "properties": {f.name: _field_schema(f.name, hints[f.name]) for f in fields},
        "required": [
            f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ],
        "additionalProperties": False,
    }


def _job(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required}


# A pair carries a scale-free dose or a raw beta (style_weight): which one, its chunk's treatment says
# (checked by core.style_batch.StyleChunk, the one place that rule is decided).
PAIR = _job(
    {
        "content": ID,
        "style": ID,
        "dose": {"type": "number", "minimum": 0},
        "style_weight": {"type": "number", "minimum": 0},
        "seed": COUNT,
        "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
    ["content", "style", "seed", "hash"],
)
SHA256 = {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[0-9a-f]{64}$"}]}

# The mean-activation normalisation of a batch's VGG: a content key and the images it is measured on.
VGG_NORM = {
    "anyOf": [
        {"type": "null"},
        _job(
            {
                "key": {"type": "string", "pattern": "^[0-9a-f]{16,64}$"},
                "images": {"type": "array", "minItems": 1, "maxItems": 4096, "items": ID},
            },
            ["key", "images"],
        ),
    ]
}

# core.attributors.AttributorSpec: who answers. Its spec is checked where it is read (the worker's attribute job);
# the key and kind are checked here, and a registered embedding's weights path stays under the artifacts root.
ATTRIBUTOR = _job(
    {
        "key": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,60}@[0-9a-f]{12}$"},
        "kind": {"enum": ["classifier", "style-space", "content-space", "embedding"]},
        "classes": {"type": "array", "minItems": 2, "maxItems": 100_000, "items": TEXT},
        "spec": {
            "type": "object",
            "properties": {
                "run_id": ID,
                "checkpoint_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "style": dataclass_schema(StyleConfig),
                "vgg_weights": WEIGHTS,
                "vgg_norm": VGG_NORM,
                "name": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,39}$"},
                "factory": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", "maxLength": 300},
                "weights": WEIGHTS,
                "size": {**_field_schema("size", int)},
                # [[image id, artist], ...]: the training images the centroids are fitted on
                "train": {
                    "type": "array",
                    "maxItems": 1_000_000,
                    "items": {"type": "array", "prefixItems": [ID, TEXT], "minItems": 2, "maxItems": 2},
                },
            },
        },
    },
    ["key", "kind", "classes", "spec"],
)
IDS = {"type": "array", "maxItems": 100_000, "items": ID}

SCHEMAS = {
    # The job's run is the row whose runs.job_id names it (rows from before that may still carry a run_id: ignored).
    "train": _job(
        {
            "dataset": TEXT,
            "dataset_id": ID,
            "arch": TEXT,
            "cell": COUNT,
            "config": dataclass_schema(TrainConfig),
            "features": ARTIFACT,
            "init_head": ARTIFACT,
            "weights": WEIGHTS,
        },
        ["dataset_id", "config"],
    ),
    "features": _job(
        {
            "dataset_id": ID,
            "arch": TEXT,
            "image_size": {**_field_schema("image_size", int)},
            "augment": TEXT,
            "views": {"type": "integer", "minimum": 1, "maximum": 256},
            "weights": WEIGHTS,
            "seed": COUNT,
            "output": ARTIFACT,
        },
        ["dataset_id", "arch", "image_size", "augment", "views", "output"],
    ),
    "stylize": _job(
        {
            "batch_id": SAFE_NAME,
            "classifier_run_id": ID,
            "classifier_sha256": SHA256,  # the checkpoint the batch was submitted with: another file is refused
            # the batch's doses (its pairs carry one each), or null for a raw-beta batch
            "doses": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "number", "minimum": 0}}]},
            "style": dataclass_schema(StyleConfig),
            "vgg_weights": WEIGHTS,
            "vgg_norm": VGG_NORM,
            "pairs": {"type": "array", "minItems": 1, "maxItems": 100_000, "items": PAIR},
            # null: the worker picks it from the device's free memory (worker.ml.style.device_batch_for)
            "device_batch": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 1, "maximum": 4096}]},
            "chunk": COUNT,
            "dataset": TEXT,
        },
        ["batch_id", "classifier_run_id", "style", "pairs", "device_batch"],
    ),
    "attribute": _job(
        {"batch_id": SAFE_NAME, "attributor": ATTRIBUTOR, "stylizations": IDS, "controls": IDS, "chunk": COUNT},
        ["batch_id", "attributor", "stylizations", "controls"],
    ),
    # core.inspection: the feature pass behind a report; a batch id is a uuid (or any safe folder-like name).
    "inspect": _job(
        {
            "run_id": ID,
            "batch_id": {"anyOf": [{"type": "null"}, SAFE_NAME]},
            "per_artist": {"type": "integer", "minimum": 0, "maximum": 1000},
            "contents": {"type": "integer", "minimum": 0, "maximum": 100_000},
            "seed": COUNT,
            "perplexity": {"type": "number", "exclusiveMinimum": 0, "maximum": 100_000},
            "works": {"anyOf": [{"type": "null"}, COUNT]},  # a fingerprint of the batch (core.inspection)
            "output": ARTIFACT,
        },
        ["run_id", "batch_id", "per_artist", "contents", "seed", "perplexity", "output"],
    ),
}
VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in SCHEMAS.items()}
# The kinds whose params are also read into a type, whose construction checks what a schema cannot say.
TYPED = {"stylize": StyleChunk.from_dict}
ARTIFACT_KEYS = ("features", "init_head", "output")


def check_params(kind: str, params: Any, artifacts: Path) -> None:
    """Raise ConfigError, in one line, if ``params`` are not a well-formed ``kind`` job."""
    validator = VALIDATORS.get(kind)
    if validator is None:
        raise ConfigError(f"unknown job kind {kind!r}")
    error = best_match(validator.iter_errors(params))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "params"
        raise ConfigError(f"bad {kind} job params at {where}: {_short(error.message)}")
    if kind in TYPED:
        try:
            TYPED[kind](params)
        except ConfigError as err:
            raise ConfigError(f"bad {kind} job params: {_short(str(err))}") from None
    for key in ARTIFACT_KEYS:
        if key in params:
            artifact_path(artifacts, params[key])
    for key in WEIGHTS_KEYS:
        if isinstance(params.get(key), dict) and params[key].get("path") is not None:
            artifact_path(artifacts, params[key]["path"])
    if kind == "attribute":
        for key in ("weights", "vgg_weights"):  # an attributor's files, as a job's own
            record = params["attributor"]["spec"].get(key)
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                artifact_path(artifacts, record["path"])


def _short(text: str, limit: int = 200) -> str:
    """jsonschema quotes the offending value; a megabyte string must not become the error."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
