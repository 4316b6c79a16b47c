"""params_hash: the one name of a job's params, by which identical finished work (a grid cell, a
features file, a stylized pair) is found again; equal numbers written differently hash equal."""

import copy
import hashlib
import random
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from core.params import clean_float
from db.jobs import params_hash


def test_canonical_form():
    assert params_hash("k", {}) == hashlib.sha256(b'{"kind":"k","params":{}}').hexdigest()
    expected = hashlib.sha256(b'{"kind":"k","params":{"a":[0.5,"x",null,true],"b":{"c":1,"d":0.0001}}}').hexdigest()
    assert params_hash("k", {"b": {"d": 1e-4, "c": 1.0}, "a": (0.5, "x", None, True)}) == expected


def test_the_kind_is_part_of_the_name():
    assert params_hash("train", {"a": 1}) != params_hash("features", {"a": 1})


def test_normalises_numbers():
    assert params_hash("k", {"lr": 1e-4}) == params_hash("k", {"lr": 0.0001})
    assert params_hash("k", {"epochs": 1}) == params_hash("k", {"epochs": 1.0})
    assert params_hash("k", {"x": 0.1 + 0.2}) == params_hash("k", {"x": 0.3})
    assert params_hash("k", {"x": -0.0}) == params_hash("k", {"x": 0})
    assert params_hash("k", {"dense": (384, 128)}) == params_hash("k", {"dense": [384, 128.0]})
    assert params_hash("k", {"lr": 1e-4}) != params_hash("k", {"lr": 1e-3})
    assert params_hash("k", {"flag": True}) != params_hash("k", {"flag": 1})
    assert params_hash("k", {"x": "1"}) != params_hash("k", {"x": 1})


def test_refuses_what_is_not_json():
    with pytest.raises(ConfigError, match="finite"):
        params_hash("k", {"lr": float("nan")})
    with pytest.raises(TypeError):
        params_hash("k", {"path": object()})
    with pytest.raises(TypeError):
        params_hash("k", {1: "a"})
    with pytest.raises(TypeError):
        params_hash("k", [1, 2])


def test_clean_float():
    assert clean_float(0.1 + 0.2) == 0.3
    assert str(clean_float(-0.0)) == "0.0"
    assert clean_float(1e-4 * 0.1) == 1e-5


names = st.text("abcxyz_0é", max_size=6)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**9), 10**9), st.floats(-1e9, 1e9, allow_nan=False), names
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(names, inner, max_size=4)),
    max_leaves=10,
)


@given(st.dictionaries(names, json_values, max_size=8), st.randoms(use_true_random=False))
def test_ignores_key_order(params, rnd: random.Random):
    def shuffled(value):
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    h = params_hash("train", params)
    assert h == params_hash("train", shuffled(params))
    assert re.fullmatch("[0-9a-f]{64}", h), h  # a sha256 in lowercase hex: what jobs.params_hash (64) holds


@given(st.dictionaries(names, json_values, min_size=1, max_size=8))
def test_every_field_is_part_of_the_name(params):
    h = params_hash("train", params)
    assert params_hash("train", copy.deepcopy(params)) == h  # stable: an equal dict, hashed again
    for key, value in params.items():
        assert params_hash("train", {**params, key: [value]}) != h, f"{key}: another value hashes the same"
        assert params_hash("train", {k: v for k, v in params.items() if k != key}) != h, f"{key}: dropped, same hash"
    assert params_hash("train", {**params, "a new field": None}) != h  # a space: no name drawn above has one
    assert params_hash("features", params) != h


@given(st.integers(-(10**6), 10**6), st.integers(1, 12))
def test_equal_numbers_hash_equal(mantissa, exp):
    scientific = float(f"{mantissa}e-{exp}")
    plain = float(format(Decimal(mantissa).scaleb(-exp), "f"))
    assert params_hash("train", {"lr": scientific, "n": mantissa}) == params_hash(
        "train", {"n": float(mantissa), "lr": plain}
    )
