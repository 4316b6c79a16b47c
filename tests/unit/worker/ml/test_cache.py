"""The uint8 image cache: decoded once per (image set, size), rebuilt when the image set changes."""

from __future__ import annotations

import pytest
import torch

import worker.ml.cache as cache
from corpus.imageio import decode_all
from corpus.synth import write_synthetic


@pytest.fixture
def paintings(tmp_path):
    root = tmp_path / "paintings"
    artists = write_synthetic(root, artists=2, per_artist=2, size=32)
    paths = [f"{a}/{k:04d}.jpg" for a in artists for k in range(2)]
    return root, paths, [f"{i}:{p}" for i, p in enumerate(paths)]


def test_built_once_then_loaded_without_decoding(tmp_path, paintings, monkeypatch):
    root, paths, keys = paintings
    path = tmp_path / "cache" / "16px.safetensors"
    done = []
    built = cache.cached_images(path, root, paths, keys, 16, progress=done.append)
    assert built.dtype == torch.uint8 and built.shape == (4, 3, 16, 16)
    assert torch.equal(built, torch.from_numpy(decode_all(root, paths, 16)))  # in the order of the paths
    assert done == [1, 2, 3, 4]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written under a temporary name, then renamed

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache was decoded again")

    monkeypatch.setattr(cache, "decode_all", no_decoding)
    assert torch.equal(cache.cached_images(path, root, paths, keys, 16), built)


def test_another_image_set_is_never_served_from_the_cache(tmp_path, paintings):
    root, paths, keys = paintings
    path = tmp_path / "16px.safetensors"
    assert cache.load_cache(path, keys) is None  # nothing built yet
    first = cache.cached_images(path, root, paths, keys, 16)
    # The same files in another order (or under other ids) are another image set: the cache is rebuilt for it.
    again = cache.cached_images(path, root, paths[::-1], keys[::-1], 16)
    assert torch.equal(again, first.flip(0))
    assert cache.load_cache(path, keys) is None and torch.equal(cache.load_cache(path, keys[::-1]), again)
    assert cache.keys_digest(keys) != cache.keys_digest(keys[::-1])
