"""Who else names the artist: the attributors a stored batch can be shown to, as both sides of a job agree on them.

An attributor answers for a batch's stored pictures (its stylizations and its matched controls) without
stylizing again. Four kinds:

- ``classifier``: another finished run or grid cell on the batch's dataset, pinned by its checkpoint's sha256;
- ``style-space``: nearest centroid of each artist's normalised VGG Gram matrices (relu1_1 ... relu5_1, the
  statistics the transfer optimises) over the dataset's training images, at the batch's size, through the
  batch's own VGG (weights, pooling, normalisation); the distance is the transfer's own style loss;
- ``content-space``: nearest centroid of the spatially pooled relu4_2 features (cosine, after centring on the
  training images' mean), which also says per stylization how close it came to its content and its style image;
- ``embedding``: any network registered by name and a safetensors file through the small interface of
  ``worker.ml.attributors`` (pictures in, one vector each out), nearest centroid by cosine as content-space.

A key names an attributor and pins it: ``run-12@<checkpoint sha256[:12]>`` for a classifier, ``<kind or
name>@<hash of its spec[:12]>`` for the others, so two answers under one key come from one thing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError

KINDS = ("classifier", "style-space", "content-space", "embedding")
SPACES = ("style-space", "content-space")
SUBJECTS = ("stylization", "control")
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")  # an embedding's name: part of its key and of its centroids' file
FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # module.path:function


def spec_hash(kind: str, spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"kind": kind, "spec": spec}, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class AttributorSpec:
    """An attributor as registered: its key, kind, the classes it names (in its probabilities' order) and its spec.

    A classifier's spec: {run_id, checkpoint_sha256}. A space's: {style (the batch's StyleConfig as a dict),
    vgg_weights, vgg_norm, train: [[image id, artist], ...]}. An embedding's: {name, factory, weights, size, train}.
    """

    key: str
    kind: str
    classes: tuple[str, ...]
    spec: dict[str, Any]

    @classmethod
    def of(cls, kind: str, classes: list[str], spec: dict[str, Any]) -> AttributorSpec:
        if kind not in KINDS:
            raise ConfigError(f"unknown attributor kind {kind!r}; choose from {', '.join(KINDS)}")
        if kind == "classifier":
            key = f"run-{spec['run_id']}@{spec['checkpoint_sha256'][:12]}"
        else:
            key = f"{spec['name'] if kind == 'embedding' else kind}@{spec_hash(kind, spec)[:12]}"
        return cls(key, kind, tuple(classes), spec)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "classes": list(self.classes), "spec": self.spec}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributorSpec:
        return cls(d["key"], d["kind"], tuple(d["classes"]), d["spec"])

    @property
    def centroids_file(self) -> str:
        """Where a nearest-centroid attributor's centroids are kept, relative to the artifacts root."""
        return f"attributors/{spec_hash(self.kind, self.spec)[:32]}.safetensors"


def own_key(run_id: int, sha256: str | None) -> str:
    """The key of a batch's own classifier: the first attributor, whose answers stay in stylizations."""
    return f"run-{run_id}@{(sha256 or 'unpinned')[:12]}"


def attribute_params(
    batch_id: str, attributor: AttributorSpec, stylizations: list[int], controls: list[int], chunk: int
):
    """One `attribute` job: the batch's stored pictures (stylization and control ids) one attributor answers for."""
    return {
        "batch_id": batch_id,
        "attributor": attributor.to_dict(),
        "stylizations": sorted(stylizations),
        "controls": sorted(controls),
        "chunk": chunk,
    }
