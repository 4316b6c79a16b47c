"""Which backbone weights a job starts from, as names and records: no database, no tensors.

A job's params carry a ``WeightsRecord`` (name, sha256, path under the artifacts root);
the CLI resolves ``--weights`` to one before any job row (``orchestrator.jobs.weights``,
with the registry in ``db.weights``), and the worker checks the file against it
(``worker.weights_store.local_file``). Finding torchvision's cached file needs no torch.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.config import ARCHS, IMAGENET_ARCHS, VGG_NAMES
from core.errors import ConfigError

RANDOM = "random"
IMAGENET = "imagenet"
# Every architecture a weight file can be for: the classifier backbones and the style VGGs.
WEIGHT_ARCHS = ARCHS + tuple(v for v in VGG_NAMES if v not in ARCHS)
# torchvision's IMAGENET1K_V1 file of every arch that has one (its url's basename; the 8 hex digits are the
# start of the file's sha256, which torchvision checks on download). Kept here so finding the file in the
# torch cache needs no torch import; tests/unit/worker/test_weights_store.py checks it against torchvision.
IMAGENET_FILES = {
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "inception_v3": "inception_v3_google-0cc3c7bd.pth",
    "alexnet": "alexnet-owt-7be5be79.pth",
}
IMAGENET_URL = "https://download.pytorch.org/models/"
# What --weights may name once imported: no path separators, not a reserved word, fits the column.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


@dataclass(frozen=True)
class WeightsRecord:
    """What a job's backbone starts from, as its params carry it."""

    name: str  # "random", "imagenet", or an imported name
    sha256: str | None  # of the file; None only for random
    path: str | None  # safetensors path relative to the artifacts root; None only for random

    def to_json(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "path": self.path}

    @classmethod
    def from_json(cls, d: dict | None) -> WeightsRecord:
        """A record from job params; None (params written before the registry, or random init) is random."""
        if d is None:
            return RANDOM_RECORD
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise ConfigError(f"a weights record must be an object with a name, got {type(d).__name__}")
        record = cls(d["name"], d.get("sha256"), d.get("path"))
        if record.name == RANDOM:
            if record.sha256 is not None or record.path is not None:
                raise ConfigError("a random-init weights record names no file")
        elif not (
            isinstance(record.sha256, str)
            and re.fullmatch(r"[0-9a-f]{64}", record.sha256)
            and isinstance(record.path, str)
            and record.path
        ):
            raise ConfigError(f"weights record {record.name!r} needs a sha256 and a path")
        return record

    @property
    def is_random(self) -> bool:
        return self.name == RANDOM

    def label(self) -> str:
        """For people: ``imagenet (sha256 0a1b2c3d4e5f)`` or ``random``."""
        return describe(self.name, self.sha256)


RANDOM_RECORD = WeightsRecord(RANDOM, None, None)


def identity(record: WeightsRecord, seed: int) -> str:
    """The name every cache key gives a network's weights: its file's sha256, or ``random:SEED`` for random
    weights, which the worker draws from ``seed`` (``torch.manual_seed``) and so are named by it as a sha256
    names a file. Pair hashes, the VGG normalisation's key and the worker's resident VGG all use this name:
    spelled anywhere else, one of the caches would stop hitting."""
    return record.sha256 or f"random:{seed}"


def started_from(weights: str | None, config: dict | None) -> str:
    """The weights name a run's backbone started from: its ``runs.weights``; for runs written before the
    weights registry, the name its config holds; else random init."""
    return weights or (config or {}).get("weights") or RANDOM


def describe(name: str | None, sha256: str | None) -> str:
    """A weights name with a short sha256, as results print it (None: random init)."""
    name = name or RANDOM
    return f"{name} (sha256 {sha256[:12]})" if sha256 else name


def random_warning(what: str, arch: str | None = None) -> str:
    """The line every result that depends on random init prints."""
    on = f" ({arch})" if arch else ""
    return f"warning: random init: {what}{on} started from random weights, not ImageNet features"


def warns_random(arch: str, name: str | None) -> bool:
    """Whether a result on ``arch`` from weights ``name`` carries the random-init warning.

    Archs without ImageNet weights (baseline-cnn, logistic) are random by nature: no warning for them.
    """
    return (name in (None, RANDOM)) and (arch in IMAGENET_ARCHS or arch in VGG_NAMES)


def default_spec(arch: str) -> str:
    """``--weights`` when not given: ImageNet for every arch that has it, random for the others."""
    return IMAGENET if arch in IMAGENET_ARCHS or arch in VGG_NAMES else RANDOM


def torch_hub_dir() -> Path:
    """torch.hub's directory as torch computes it from the environment, without importing torch:
    $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub (torch.hub._get_torch_home)."""
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub"


def imagenet_cache_file(arch: str) -> Path:
    """Where torchvision's weights API caches ``arch``'s ImageNet file on this host."""
    return torch_hub_dir() / "checkpoints" / IMAGENET_FILES[arch]


def check_arch(arch: str) -> None:
    if arch not in WEIGHT_ARCHS:
        raise ConfigError(f"unknown arch {arch!r} for weights; choose from {', '.join(WEIGHT_ARCHS)}")


def name_for_file(path: Path) -> str:
    """The name a file given to --weights is recorded under: its stem, made a valid name, never a reserved one."""
    stem = re.sub(r"[^A-Za-z0-9._+-]", "-", path.name.split(".")[0] or path.name).strip("-.") or "file"
    if not stem[0].isalnum() or stem in (RANDOM, IMAGENET):
        stem = f"file-{stem}"
    return stem[:100]


def torchvision_source(arch: str, path: Path) -> str:
    return f"torchvision IMAGENET1K_V1 {IMAGENET_URL}{IMAGENET_FILES[arch]} (from {path})"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_torchvision_hash(path: Path) -> None:
    """torchvision's files are named by the start of their sha256: a cached file that is not is refused."""
    prefix = re.search(r"-([0-9a-f]{8,})\.", path.name)
    if prefix and not sha256_file(path).startswith(prefix.group(1)):
        raise ConfigError(
            f"{path} is not torchvision's file (its sha256 does not start with {prefix.group(1)}): "
            f"delete it, or import the right one with `atelier weights import`"
        )


def job_record(params: dict, key: str = "weights") -> WeightsRecord:
    """The weights record of a job's params; params written before the registry carry none (random only)."""
    if key in params:
        return WeightsRecord.from_json(params[key])
    named = (params.get("config") or {}).get("weights")
    if named not in (None, RANDOM):
        raise ConfigError(f"this job names weights {named!r} but carries no weights record: submit it again")
    return RANDOM_RECORD
