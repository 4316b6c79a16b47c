"""The uint8 image cache: every image decoded and resized once per (dataset, size).

Stored as one safetensors file (no pickle) holding ``images uint8 (N, 3, S, S)``
in the order of the key list it was built for; the key list's hash is in the
metadata, so a cache built for another image set is never used by mistake.
Written to a temporary name and renamed, so a worker killed mid-build never
leaves a half file behind and two workers building at once both end well.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open

from corpus.imageio import decode_all
from worker.ml.checkpoint import atomic_save


def keys_digest(keys: list[str]) -> str:
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


def load_cache(path: Path, keys: list[str]) -> torch.Tensor | None:
    if not path.exists():
        return None
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("keys_digest") != keys_digest(keys):
            return None
    return load_file(str(path))["images"]


def build_cache(
    path: Path,
    root: Path,
    rel_paths: list[str],
    keys: list[str],
    size: int,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Decode ``rel_paths`` under ``root`` to ``uint8 (N, 3, size, size)`` and save it."""
    images = torch.from_numpy(decode_all(root, rel_paths, size, progress=progress))
    atomic_save({"images": images}, path, {"keys_digest": keys_digest(keys), "size": str(size)})
    return images


def cached_images(
    path: Path,
    root: Path,
    rel_paths: list[str],
    keys: list[str],
    size: int,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    images = load_cache(path, keys)
    if images is None:
        images = build_cache(path, root, rel_paths, keys, size, progress)
    return images
