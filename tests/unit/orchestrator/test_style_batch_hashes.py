"""Golden hashes of style batches: a finished pair is found again by its hash, so the hash of every spec that
could have been submitted must never change. The values below were computed by the code that submitted the
existing batches (before the batch spec became a type); a refactor that changes one of them would silently
re-stylize every finished pair.

Pinned per case: every pair's hash (``plan_pairs``), the stored batch spec and a chunk job's params (through
``params_hash``, which is blind to key order but not to a key or a value), and the VGG normalisation's key.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from core.config import StyleConfig
from core.params import stylize_params
from core.style_batch import Sampling, StyleBatchSpec, Treatment
from core.weights import RANDOM_RECORD, WeightsRecord
from db.jobs import params_hash
from orchestrator.jobs.style_batch import plan_pairs, vgg_norm

IMAGENET = WeightsRecord("imagenet", "ab" * 32, f"weights/vgg19/{'ab' * 32}.safetensors")
IMPORTED = WeightsRecord("wikiart-vgg16", "cd" * 32, f"weights/vgg16/{'cd' * 32}.safetensors")
TRAIN = [(i, f"artist-{i % 3}") for i in range(1, 13)]  # (image id, label) of the train split
PAIRS = [(101, 205), (102, 206), (205, 101), (101, 205)]  # the last names the first again: stylized once
SHA = "5e" * 32

CASES = {
    # The documented real-paintings batch's kind (lbfgs, the default before lbfgs-onepass): doses, from noise at
    # 256 px, ImageNet VGG19 normalised on 8 images.
    "doses, lbfgs, imagenet, normalised": dict(
        style=StyleConfig(optimizer="lbfgs"),
        doses=[0.0, 0.1, 1.0, 10.0, 100.0, 1000.0],
        betas=None,
        vgg=IMAGENET,
        norm=8,
    ),
    # The paper's raw betas, Adam from the content image, random VGG, no normalisation, an unpinned classifier.
    "raw betas, adam, random, unnormalised": dict(
        style=StyleConfig(optimizer="adam", init="content", size=64, steps=40, lr=0.05, seed=3),
        doses=None,
        betas=[0.0, 1e2, 1e5],
        vgg=RANDOM_RECORD,
        norm=0,
        sha=None,
    ),
    "doses, onepass, vgg16 max-pool tutorial loss, random, normalised": dict(
        style=StyleConfig(
            vgg="vgg16", optimizer="lbfgs-onepass", pool="max", loss="tutorial", size=128, steps=50, seed=7
        ),
        doses=[0.01, 1.0, 100.0],
        betas=None,
        vgg=RANDOM_RECORD,
        norm=4,
    ),
    "raw betas, lbfgs-unit, weights and tv, imported vgg16": dict(
        style=StyleConfig(
            vgg="vgg16", optimizer="lbfgs-unit", content_weight=2.0, tv_weight=0.5, history=5, size=32, steps=3
        ),
        doses=None,
        betas=[1e3],
        vgg=IMPORTED,
        norm=64,
    ),
}

GOLDEN = {
    # case: (sha256 of the pairs' hashes in order, stored spec's params_hash, chunk's params_hash, norm key)
    "doses, lbfgs, imagenet, normalised": (
        "7dda3cd48f83967060857ea7953213eead37337d418ff67ad10e0034da2c3c1c",
        "8f5344f64f1eef34697eb94e856117d3a8af7df55648ebb66c1cf3dd2ed82b65",
        "82a6d7896ec233b127a0c99e2467059f68c6ac67220a01ab973e0895679afab5",
        "e21553565cd63b01ae72e05f83a4162c",
    ),
    "raw betas, adam, random, unnormalised": (
        "15ba96a216a3e66d100e1523a60cb538c6750e67bc4cc37420a5e6146146ca08",
        "ffddc09f8b9a8edbac5d368e0520021e401f09555182b5723a0638775983b894",
        "4e3ac8842013bb5b45de9aa2a32eed510cf5bac2abd916b0bdb1656b8966ad70",
        None,
    ),
    "doses, onepass, vgg16 max-pool tutorial loss, random, normalised": (
        "c7d0248589380979984e60455018b656ec49ccfeac6a221978aab80f6fb53275",
        "5b71c53d9c5f702bde0c38187beb5cdade3894688b606e6c8dc6791bd6028617",
        "feadabfcbe60e402b9734fc9803392105154b14512e4244ed1883f8711d61ea8",
        "f66ad48cb3ce35bfc999100321499018",
    ),
    "raw betas, lbfgs-unit, weights and tv, imported vgg16": (
        "a50f0a7e1c2fc5d7f424230c63ce0cb3eb00cd8d951b3095e5b971c81b20015b",
        "52a3ea169aa4d9a7c9f285467c287a59727a81e313c92cd6cddf731b9ff95bac",
        "e320e4a954ae4d575d9f7d17e5ee478e28f00dea7c1afe270322ff044565efa5",
        "b5afc669d398842c6975a31e2240ac05",
    ),
}


def build(case: dict) -> tuple[list[dict], dict, dict, str | None]:
    """(planned pairs, stored spec, chunk 0's params, norm key) as the code under test builds them."""
    style = case["style"]
    norm = vgg_norm(case["vgg"], style, TRAIN, case["norm"])
    spec = StyleBatchSpec(
        dataset="art",
        classifier_run_id=4,
        style=style,
        treatment=Treatment.of(case["doses"], case["betas"]),
        vgg_weights=case["vgg"],
        vgg_norm=norm,
        sampling=Sampling("cross-artist", 2, "test"),
        classifier_sha256=case.get("sha", SHA),
    )
    todo = plan_pairs(PAIRS, spec)
    chunk = stylize_params("0b8f6f43-1c1e-4d0f-9d51-2f0e0c6c0a11", spec, todo[:5], 0, None)
    assert StyleBatchSpec.from_dict(spec.to_dict()) == spec  # what the store keeps reads back as the same batch
    return [q.to_dict(spec.treatment) for q in todo], spec.to_dict(), chunk, norm and norm.key


def fingerprint(case: dict) -> tuple[str, str, str, str | None]:
    todo, spec, chunk, key = build(case)
    hashes = hashlib.sha256(json.dumps([q["hash"] for q in todo]).encode()).hexdigest()
    return hashes, params_hash("batch", spec), params_hash("stylize", chunk), key


@pytest.mark.parametrize("name", CASES)
def test_style_batch_hashes_never_change(name):
    assert fingerprint(CASES[name]) == GOLDEN[name]


def test_a_pair_named_twice_is_planned_once():
    for case in CASES.values():
        todo, spec, _, _ = build(case)
        levels = case["doses"] or case["betas"]
        assert len(todo) == 3 * len(levels)


def test_what_a_pair_hash_names():
    # Spelled out once, so a reader sees the key: the first pair of the study's case at dose 0.
    todo, _, _, _ = build(CASES["doses, lbfgs, imagenet, normalised"])
    key = {
        "content": 101,
        "style": 205,
        "dose": 0.0,
        "seed": 1266601806,
        "style_cfg": {
            **{"vgg": "vgg19", "content_weight": 1.0, "style_weight": 1000.0, "tv_weight": 0.0, "init": "noise"},
            **{"pool": "avg", "loss": "gatys", "optimizer": "lbfgs", "steps": 300, "size": 256, "lr": 0.02},
            **{"history": 10, "seed": 0},
        },
        "vgg_weights": "ab" * 32,
        "vgg_norm": "e21553565cd63b01ae72e05f83a4162c",
        "classifier": 4,
        "checkpoint": SHA,
    }
    assert todo[0] == {"content": 101, "style": 205, "dose": 0.0, "seed": 1266601806, "hash": params_hash("pair", key)}
    assert todo[0]["hash"] == "4c0e567b3659922660f42dd9cdf388ba4280a3487c3a5e350062eaeb0dc59d6a"
    # Random weights are named by the style seed they are drawn from.
    random_todo, _, _, _ = build(CASES["raw betas, adam, random, unnormalised"])
    q = random_todo[0]
    style = vars(CASES["raw betas, adam, random, unnormalised"]["style"])
    key = {"content": 101, "style": 205, "style_weight": 0.0, "seed": q["seed"], "style_cfg": style}
    key |= {"vgg_weights": "random:3", "vgg_norm": None, "classifier": 4, "checkpoint": None}
    assert q["hash"] == params_hash("pair", key)
