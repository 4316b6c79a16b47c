"""Job params are checked before a worker acts on them; artifacts stay under their root; OOM halves the batch.

The params checked are the ones the real builders (core.params) write, for every kind of job.
"""

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core import params as build
from core.artifacts import artifact_path, features_path
from core.config import StyleConfig, TrainConfig
from core.errors import ConfigError
from core.inspection import inspect_key
from core.style_batch import Sampling, StyleBatchSpec, StyleChunk, StylePair, Treatment
from core.weights import RANDOM_RECORD, WeightsRecord
from db.jobs import params_hash
from worker.lifecycle import Resubmit
from worker.oom import halve_batch, simulated_oom
from worker.payload import check_params

HASH = "ab" * 32
ARTIFACTS = Path("/tmp/atelier-artifacts-test")  # never created: only where paths may point matters
IMAGENET = WeightsRecord("imagenet", HASH, f"weights/resnet18/{HASH}.safetensors")
WEIGHTS = IMAGENET.to_json()
CFG = TrainConfig(arch="resnet18", num_classes=3, image_size=32, dense=(16,))
CELL = replace(CFG, mode="feature-extract", augment="keras", views=4, features_seed=0, lr=1e-3)
STYLE = StyleConfig(size=32, steps=2)
PAIR = {"content": 1, "style": 2, "dose": 1.0, "seed": 0, "hash": HASH}
RAW_PAIR = {"content": 1, "style": 2, "style_weight": 1e5, "seed": 0, "hash": HASH}


def train_params(**config):
    return build.train_params("d", 1, replace(CFG, **config), RANDOM_RECORD)


def features_params(cfg=CELL, weights=RANDOM_RECORD):
    return build.features_params(1, cfg, weights, params_hash)


def spec(style=STYLE, vgg=RANDOM_RECORD, raw=False):
    treatment = Treatment.of(style_weights=[0.0, 1e5]) if raw else Treatment.of(doses=[0.0, 1.0])
    return StyleBatchSpec("d", 1, style, treatment, vgg, None, Sampling("cross-artist", 1, "test"), "ab" * 32)


def chunk(batch_id: str, spec: StyleBatchSpec, pairs: list[dict], n: int, device_batch: int | None) -> dict:
    level = spec.treatment.field
    typed = [StylePair(q["content"], q["style"], q[level], q["seed"], q["hash"]) for q in pairs]
    return build.stylize_params(batch_id, spec, typed, n, device_batch)


def stylize_params(**overrides):
    return {**chunk("abc123", spec(), [PAIR], 0, 4), **overrides}


FEATURES = features_params()
# Every kind of job as the CLI and the worker's follow-ups write it.
BUILT = {
    "train": ("train", build.train_params("d", 1, CFG, IMAGENET)),
    "train, random init": ("train", train_params()),
    "grid cell, fine-tune": ("train", build.cell_params("d", 1, replace(CFG, lr=1e-3), IMAGENET, 3)),
    "grid cell, feature-extract": ("train", build.cell_params("d", 1, CELL, IMAGENET, 0, FEATURES["output"])),
    "features": ("features", FEATURES),
    "features, imagenet": ("features", features_params(weights=IMAGENET)),
    "fine-tune follow-up": ("train", build.finetune_params("d", 1, CELL, 0, "runs/5/best.safetensors", 0.1, IMAGENET)),
    "fine-tune follow-up of an old cell": (
        "train",
        build.finetune_params("d", 1, CELL, 0, "runs/5/best.safetensors", 0.1, None),
    ),
    "stylize chunk": ("stylize", stylize_params()),
    "stylize chunk, imagenet vgg": ("stylize", chunk("b", spec(vgg=IMAGENET), [PAIR] * 2, 7, 16)),
    "stylize chunk, raw betas": ("stylize", chunk("b", spec(raw=True), [RAW_PAIR], 0, 4)),
    "inspect a run": ("inspect", build.inspect_params(inspect_key(3, None, 3, 8, 0, 30.0), params_hash)),
    "inspect a run and batch": (
        "inspect",
        build.inspect_params(inspect_key(3, "0b8f6f43-1c1e-4d0f-9d51-2f0e0c6c0a11", 0, 0, 7, 2.5), params_hash),
    ),
}


@pytest.mark.parametrize("what", BUILT)
def test_the_params_the_builders_write_pass(tmp_path, what):
    kind, params = BUILT[what]
    check_params(kind, params, tmp_path)
    # A JSON round trip (what the store does) changes nothing, the params' hash included.
    stored = json.loads(json.dumps(params))
    check_params(kind, stored, tmp_path)
    assert params_hash(kind, stored) == params_hash(kind, params)
    assert kind != "train" or "run_id" not in params  # a train job's run is the row whose runs.job_id names it


def test_train_params_round_trip():
    params = build.train_params("d", 1, replace(CFG, weights="imagenet"), IMAGENET)
    assert TrainConfig.from_json(params["config"]) == replace(CFG, weights="imagenet")
    assert WeightsRecord.from_json(params["weights"]) == IMAGENET
    assert (params["dataset"], params["dataset_id"], params["arch"]) == ("d", 1, "resnet18")
    # The config names the weights its record holds, whatever spec the caller wrote ("imagenet", a file path).
    assert build.train_params("d", 1, replace(CFG, weights="/tmp/w.pt"), IMAGENET)["config"]["weights"] == "imagenet"
    assert TrainConfig.from_json(train_params()["config"]).weights == "random"


def test_cell_params_round_trip():
    params = build.cell_params("d", 1, CELL, RANDOM_RECORD, 12, FEATURES["output"])
    assert TrainConfig.from_json(params["config"]) == replace(CELL, weights="random")
    assert (params["cell"], params["features"]) == (12, FEATURES["output"])
    assert "features" not in build.cell_params("d", 1, CFG, RANDOM_RECORD, 0)
    # Equal cells are the same job, by hash: how a finished cell is found again.
    again = build.cell_params("d", 1, replace(CELL, lr=0.001, weight_decay=0), RANDOM_RECORD, 12, FEATURES["output"])
    assert params_hash("train", again) == params_hash("train", params)


def test_features_params_name_their_output_by_what_the_maps_depend_on():
    key = {k: v for k, v in FEATURES.items() if k != "output"}
    assert FEATURES["output"] == features_path(params_hash("features", key)).as_posix()
    assert (key["image_size"], key["augment"], key["views"], key["seed"]) == (32, "keras", 4, 0)
    assert WeightsRecord.from_json(key["weights"]) == RANDOM_RECORD
    # Cells that differ only in their head share one features job; another view count needs its own.
    assert features_params(replace(CELL, lr=0.5, dropout=0.1, dense=())) == FEATURES
    assert features_params(replace(CELL, views=2))["output"] != FEATURES["output"]
    assert features_params(weights=IMAGENET)["output"] != FEATURES["output"]


def test_finetune_params_round_trip():
    params = build.finetune_params(
        "d", 1, replace(CELL, weights="imagenet"), 4, "runs/5/best.safetensors", 0.1, IMAGENET
    )
    cfg = TrainConfig.from_json(params["config"])
    # End to end on images, at the cell's lr x the scale, without stored feature views.
    assert cfg.lr == pytest.approx(1e-4)
    assert replace(cfg, lr=CELL.lr) == replace(CELL, weights="imagenet", mode="fine-tune", views=1, features_seed=0)
    assert (params["init_head"], params["cell"]) == ("runs/5/best.safetensors", 4)
    assert WeightsRecord.from_json(params["weights"]) == IMAGENET
    assert "weights" not in build.finetune_params("d", 1, CELL, 4, "h.safetensors", 0.1, None)


def test_stylize_params_round_trip():
    params = stylize_params()
    assert StyleConfig(**params["style"]) == STYLE
    assert WeightsRecord.from_json(params["vgg_weights"]) == RANDOM_RECORD
    assert (
        params["batch_id"],
        params["classifier_run_id"],
        params["pairs"],
        params["chunk"],
        params["device_batch"],
    ) == ("abc123", 1, [PAIR], 0, 4)
    stored, raw = spec().to_dict(), spec(raw=True).to_dict()
    assert stored["doses"] == [0.0, 1.0] and stored["style_weights"] is None and stored["pairs"] == "cross-artist"
    assert raw["style_weights"] == [0.0, 1e5] and raw["doses"] is None
    # The worker reads the chunk back typed: the same pairs at the same levels of the same treatment.
    typed = StyleChunk.from_dict(params)
    assert typed.treatment == spec().treatment and typed.pairs == (StylePair(1, 2, 1.0, 0, HASH),)
    assert StyleChunk.from_dict(BUILT["stylize chunk, raw betas"][1]).treatment == Treatment("style_weight", (1e5,))


def test_a_batch_has_doses_or_raw_betas_never_both(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        Treatment.of(doses=[1.0], style_weights=[1e3])
    assert Treatment.of() == Treatment("dose", (0.0, 0.1, 1.0, 10.0, 100.0, 1000.0))  # neither: the default doses
    with pytest.raises(ConfigError, match="--style-weight values must be finite and non-negative"):
        Treatment.of(style_weights=[float("inf")])
    # A chunk's pairs carry a level of the chunk's treatment: a dose in a raw-beta chunk, or both, is refused.
    for pair, raw in ((PAIR, True), (RAW_PAIR, False), ({**PAIR, "style_weight": 1.0}, False)):
        params = chunk("b", spec(raw=raw), [RAW_PAIR if raw else PAIR], 0, 4) | {"pairs": [pair]}
        with pytest.raises(ConfigError, match="bad stylize job params: pair 0 of a"):
            check_params("stylize", params, tmp_path)


def test_rows_written_before_run_id_was_dropped_still_pass(tmp_path):
    check_params("train", {**train_params(), "run_id": 7}, tmp_path)


@pytest.mark.parametrize(
    "kind,params,fragment",
    [
        ("train", [], "[] is not of type 'object'"),
        ("train", {"dataset_id": 1}, "'config' is a required property"),
        (
            "train",
            {**train_params(), "config": {**train_params()["config"], "epochs": "ten"}},
            "config.epochs: 'ten' is not of type 'integer'",
        ),
        ("train", {**train_params(), "config": {**train_params()["config"], "epochs": 10**12}}, "config.epochs"),
        ("train", {**train_params(), "config": {**train_params()["config"], "image_size": 10**9}}, "config.image_size"),
        ("train", {**train_params(), "config": {**train_params()["config"], "dense": [16, -1]}}, "config.dense.1"),
        (
            "train",
            {**train_params(), "config": {**train_params()["config"], "colour": "red"}},
            "'colour' was unexpected",
        ),
        ("train", {**train_params(), "dataset_id": 2**40}, "dataset_id"),
        ("train", {**train_params(), "dataset_id": True}, "dataset_id"),
        ("train", {**train_params(), "features": "../../etc/passwd"}, "leaves the artifacts root"),
        ("train", {**train_params(), "init_head": "/etc/passwd"}, "is absolute"),
        ("train", {**train_params(), "features": "a\x00b"}, "NUL"),
        ("features", {**FEATURES, "views": 10**6}, "views"),
        ("train", {**train_params(), "weights": {**WEIGHTS, "path": "../../etc/passwd"}}, "leaves the artifacts root"),
        ("features", {**FEATURES, "weights": {**WEIGHTS, "path": "/etc/passwd"}}, "is absolute"),
        ("train", {**train_params(), "weights": {**WEIGHTS, "sha256": "x"}}, "weights"),
        ("features", {**FEATURES, "weights": "imagenet"}, "weights"),
        ("features", {**FEATURES, "output": "../x"}, "leaves the artifacts root"),
        ("stylize", stylize_params(batch_id="../../x"), "batch_id"),
        ("stylize", stylize_params(pairs=[]), "pairs"),
        ("stylize", stylize_params(pairs=[{"content": 1}]), "pairs.0"),
        ("stylize", stylize_params(device_batch=0), "device_batch"),
        ("stylize", stylize_params(style={**vars(StyleConfig()), "steps": 10**9}), "style.steps"),
        ("inspect", {**BUILT["inspect a run"][1], "perplexity": 0}, "perplexity"),
        ("inspect", {**BUILT["inspect a run"][1], "batch_id": "../b"}, "batch_id"),
        ("inspect", {**BUILT["inspect a run"][1], "output": "/etc"}, "is absolute"),
        ("paint", {}, "unknown job kind 'paint'"),
    ],
)
def test_malformed_params_are_one_clear_line(tmp_path, kind, params, fragment):
    with pytest.raises(ConfigError) as err:
        check_params(kind, params, tmp_path)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_a_huge_value_does_not_become_a_huge_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_params("train", {**train_params(), "arch": "x" * 1_000_000}, tmp_path)
    assert len(str(err.value)) < 400


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_escapes_as_another_error(params):
    for kind in ("train", "features", "stylize", "inspect"):
        try:
            check_params(kind, params, ARTIFACTS)
        except ConfigError as err:
            assert "\n" not in str(err)


def test_artifact_paths_stay_under_the_root(tmp_path):
    root = tmp_path / "artifacts"
    (root / "runs").mkdir(parents=True)
    assert artifact_path(root, "runs/1/best.safetensors") == (root / "runs/1/best.safetensors").resolve()
    assert artifact_path(root, "runs/../cache/x") == (root / "cache/x").resolve()
    for bad in ("../x", "runs/../../x", "/etc/passwd", ""):
        with pytest.raises(ConfigError):
            artifact_path(root, bad)
    # A symlink inside the root that points out of it is refused too.
    os.symlink(tmp_path, root / "escape")
    with pytest.raises(ConfigError, match="leaves the artifacts root"):
        artifact_path(root, "escape/secret")


def test_oom_halves_the_batch_and_records_it():
    params = train_params(batch_size=16)
    again = halve_batch(params, ("config", "batch_size"), torch.OutOfMemoryError("CUDA out of memory. Tried 2 GiB"))
    assert isinstance(again, Resubmit)
    assert again.params["config"]["batch_size"] == 8 and params["config"]["batch_size"] == 16
    assert again.params["oom_retries"] == [{"batch_size": 16, "error": "CUDA out of memory. Tried 2 GiB"}]
    assert "retrying with 8" in again.reason
    twice = halve_batch(again.params, ("config", "batch_size"), torch.OutOfMemoryError(""))
    assert [r["batch_size"] for r in twice.params["oom_retries"]] == [16, 8]
    one = train_params(batch_size=1)
    assert halve_batch(one, ("config", "batch_size"), torch.OutOfMemoryError("x")) is None


def test_simulated_oom_spares_small_batches_and_inference():
    layer = torch.nn.Linear(4, 2)
    with simulated_oom(8):
        layer(torch.zeros(8, 4))
        with torch.no_grad():
            layer(torch.zeros(64, 4))
        with pytest.raises(torch.OutOfMemoryError, match="simulated"):
            layer(torch.zeros(9, 4))
    layer(torch.zeros(64, 4))  # the hook is gone afterwards


def test_an_attribute_job_names_its_attributor_and_pictures_and_keeps_its_files_under_the_root(tmp_path):
    from core.attributors import AttributorSpec, attribute_params

    embedding = {"name": "tiny", "factory": "tests.tiny_embedding:build", "size": 24, "train": [[1, "a"], [2, "b"]]}
    embedding["weights"] = {"name": "tiny", "sha256": "0" * 64, "path": "embeddings/x.safetensors"}
    who = AttributorSpec.of("embedding", ["a", "b"], embedding)
    check_params("attribute", attribute_params("b1", who, [1, 2], [3], 0), tmp_path)
    for spec, says in (
        ({**embedding, "weights": {**embedding["weights"], "path": "../../etc/passwd"}}, "leaves the artifacts root"),
        ({**embedding, "factory": "os.system('x'):y"}, "factory"),
        ({**embedding, "train": [[1]]}, "train"),
    ):
        bad = AttributorSpec("tiny@0123456789ab", "embedding", ("a", "b"), spec)
        with pytest.raises(ConfigError, match=says):
            check_params("attribute", attribute_params("b1", bad, [1], [], 0), tmp_path)
