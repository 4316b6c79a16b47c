"""Job params are checked before a worker acts on them; artifacts stay under their root; OOM halves the batch."""

import json
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.artifacts import artifact_path
from worker.lifecycle import Resubmit
from core.config import StyleConfig, TrainConfig
from core.errors import ConfigError
from worker.oom import halve_batch, simulated_oom
from worker.payload import check_params

HASH = "ab" * 32
ARTIFACTS = Path("/tmp/atelier-artifacts-test")  # never created: only where paths may point matters


def train_params(**config):
    cfg = TrainConfig(arch="resnet18", num_classes=3, image_size=32, dense=(16,), **config).to_json()
    return {"dataset": "d", "dataset_id": 1, "arch": "resnet18", "config": cfg, "run_id": 7, "cell": 0}


def stylize_params(**overrides):
    return {"batch_id": "abc123", "classifier_run_id": 1, "style": vars(StyleConfig(size=32, steps=2)),
            "vgg_weights": None, "pairs": [{"content": 1, "style": 2, "style_weight": 1e5, "seed": 0, "hash": HASH}],
            "device_batch": 4, "dataset": "d", "chunk": 0, **overrides}


WEIGHTS = {"name": "imagenet", "sha256": HASH, "path": f"weights/resnet18/{HASH}.safetensors"}
FEATURES = {"dataset_id": 1, "arch": "resnet18", "image_size": 32, "augment": "none", "views": 1, "weights": None,
            "seed": 0, "output": "features/x.safetensors"}


def test_the_params_the_cli_writes_pass(tmp_path):
    check_params("train", train_params(), tmp_path)
    check_params("train", {**train_params(), "features": "features/f.safetensors"}, tmp_path)
    check_params("stylize", stylize_params(), tmp_path)
    check_params("features", FEATURES, tmp_path)
    check_params("train", {**train_params(weights="imagenet"), "weights": WEIGHTS}, tmp_path)
    check_params("features", {**FEATURES, "weights": WEIGHTS}, tmp_path)
    check_params("train", {**train_params(weights="random"), "weights": {"name": "random", "sha256": None, "path": None}},
                 tmp_path)
    # A JSON round trip (what the store does) changes nothing.
    check_params("train", json.loads(json.dumps(train_params())), tmp_path)


@pytest.mark.parametrize("kind,params,fragment", [
    ("train", [], "[] is not of type 'object'"),
    ("train", {"dataset_id": 1, "run_id": 1}, "'config' is a required property"),
    ("train", {**train_params(), "config": {**train_params()["config"], "epochs": "ten"}}, "config.epochs: 'ten' is not of type 'integer'"),
    ("train", {**train_params(), "config": {**train_params()["config"], "epochs": 10**12}}, "config.epochs"),
    ("train", {**train_params(), "config": {**train_params()["config"], "image_size": 10**9}}, "config.image_size"),
    ("train", {**train_params(), "config": {**train_params()["config"], "dense": [16, -1]}}, "config.dense.1"),
    ("train", {**train_params(), "config": {**train_params()["config"], "colour": "red"}}, "'colour' was unexpected"),
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
    ("paint", {}, "unknown job kind 'paint'"),
])
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
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20))
def test_arbitrary_json_never_escapes_as_another_error(params):
    for kind in ("train", "features", "stylize"):
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
