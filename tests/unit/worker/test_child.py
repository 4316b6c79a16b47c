"""The long-lived child's cache and its replacement check (no worker process: the pieces alone)."""

from __future__ import annotations

import sys

import billiard.pool
import pytest

from worker import child
from worker.child import Resident


def test_resident_builds_once_per_key_and_drops_the_least_recently_used():
    cache, built = Resident({"vgg": 2}), []

    def build(key):
        return lambda: built.append(key) or f"model {key}"

    assert cache.get("vgg", "a", build("a")) == "model a"
    assert cache.get("vgg", "a", build("a")) == "model a"  # a hit builds nothing
    cache.get("vgg", "b", build("b"))
    cache.get("vgg", "a", build("a"))  # a is now the most recent
    cache.get("vgg", "c", build("c"))  # evicts b, not a
    cache.get("vgg", "a", build("a"))
    cache.get("vgg", "b", build("b"))
    assert built == ["a", "b", "c", "b"]
    assert (cache.hits, cache.misses) == (3, 4)


def test_kinds_have_their_own_bounds():
    cache = Resident({"vgg": 1, "images": 2})
    for key in "xyz":
        cache.get("images", key, lambda k=key: k)
    cache.get("vgg", "v", lambda: "v")
    assert list(cache.entries["images"]) == ["y", "z"] and list(cache.entries["vgg"]) == ["v"]


def test_file_key_changes_when_the_file_is_rewritten(tmp_path):
    f = tmp_path / "ckpt.safetensors"
    f.write_bytes(b"one")
    first = child.file_key(f)
    f.write_bytes(b"other!")
    assert child.file_key(f) != first and child.file_key(f)[0] == str(f)


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(child, "_child", child._Child())
    monkeypatch.setattr(billiard.pool, "mem_rss", billiard.pool.mem_rss)  # restored after the test
    yield child._child


def test_a_child_asked_to_go_reports_more_memory_than_any_limit(fresh_state):
    child._install_replacement_check()
    real = billiard.pool.mem_rss()
    assert 0 < real < sys.maxsize  # billiard's check sees the real RSS until a job asks for a fresh child
    fresh_state.resident.get("vgg", "k", lambda: "v")
    child.request_fresh_child("job x ran out of memory")
    assert billiard.pool.mem_rss() == sys.maxsize
    assert fresh_state.resident.entries == {}  # nothing cached survives into the replacement decision
