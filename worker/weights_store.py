"""Which backbone weights a job starts from: resolved once at submit time, checked on the worker.

In a cluster the CLI host and the workers are different machines and torchvision's
cache is per machine, so every weight file a job may load is kept under the shared
artifacts root (``weights/<arch>/<sha256>.safetensors``, torchvision's key names,
backbone only) and recorded in the ``weights`` table with its sha256. A submit on any
host then sees exactly what every worker will load; a job's params carry the
``WeightsRecord`` (name, sha256, path), and the worker refuses a file whose sha256
is not the recorded one (``local_file``).

``imagenet`` resolves through torchvision's weights API: the newest recorded file,
else torchvision's torch-hub cache file for the arch (copied in, hashed, recorded),
else, unless offline, torchvision's own hash-checked download (recorded the same
way), else one line naming the file and ``atelier weights import``. ``random`` is
never a default for an arch that has ImageNet weights: it is asked for.

Job-level glue (DESIGN rule 2): it uses the session; the tensor work is in
``worker.ml.weights``. The CLI imports this module, so torch is imported only inside
the functions that read or write tensors, never to find a recorded file.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.models import Weights
from worker.artifacts import artifact_path
from worker.ml.config import ARCHS, IMAGENET_ARCHS, VGG_NAMES
from worker.ml.errors import ConfigError

RANDOM = "random"
IMAGENET = "imagenet"
# Every architecture a weight file can be for: the classifier backbones and the style VGGs.
WEIGHT_ARCHS = ARCHS + tuple(v for v in VGG_NAMES if v not in ARCHS)
# torchvision's IMAGENET1K_V1 file of every arch that has one (its url's basename; the 8 hex digits are the
# start of the file's sha256, which torchvision checks on download). Kept here so finding the file in the
# torch cache needs no torch import; tests/unit/test_weights_store.py checks it against torchvision.
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
    def from_json(cls, d: dict | None) -> "WeightsRecord":
        """A record from job params; None (params written before the registry, or random init) is random."""
        if d is None:
            return RANDOM_RECORD
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise ConfigError(f"a weights record must be an object with a name, got {type(d).__name__}")
        record = cls(d["name"], d.get("sha256"), d.get("path"))
        if record.name == RANDOM:
            if record.sha256 is not None or record.path is not None:
                raise ConfigError("a random-init weights record names no file")
        elif not (isinstance(record.sha256, str) and re.fullmatch(r"[0-9a-f]{64}", record.sha256)
                  and isinstance(record.path, str) and record.path):
            raise ConfigError(f"weights record {record.name!r} needs a sha256 and a path")
        return record

    @property
    def is_random(self) -> bool:
        return self.name == RANDOM

    def label(self) -> str:
        """For people: ``imagenet (sha256 0a1b2c3d4e5f)`` or ``random``."""
        return describe(self.name, self.sha256)


RANDOM_RECORD = WeightsRecord(RANDOM, None, None)


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


# ---------------------------------------------------------------------------------------------------------------
# Submit side: resolve a spec to a recorded file.


def torch_hub_dir() -> Path:
    """torch.hub's directory as torch computes it from the environment, without importing torch:
    $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else ~/.cache/torch/hub (torch.hub._get_torch_home)."""
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(os.path.expanduser(home)) / "hub"


def imagenet_cache_file(arch: str) -> Path:
    """Where torchvision's weights API caches ``arch``'s ImageNet file on this host."""
    return torch_hub_dir() / "checkpoints" / IMAGENET_FILES[arch]


def _check_arch(arch: str) -> None:
    if arch not in WEIGHT_ARCHS:
        raise ConfigError(f"unknown arch {arch!r} for weights; choose from {', '.join(WEIGHT_ARCHS)}")


def _recorded(session, artifacts: Path, arch: str, name: str) -> tuple[WeightsRecord | None, Weights | None]:
    """(the newest recorded file of (arch, name) present under the artifacts root, the newest row even if absent)."""
    rows = session.scalars(select(Weights).where(Weights.arch == arch, Weights.name == name)
                           .order_by(Weights.created_at.desc(), Weights.id.desc())).all()
    for row in rows:
        if artifact_path(artifacts, row.path).is_file():
            return WeightsRecord(row.name, row.sha256, row.path), rows[0]
    return None, rows[0] if rows else None


def resolve(session, artifacts: Path, arch: str, spec: str, offline: bool) -> WeightsRecord:
    """At submit time, before any job row: the weights ``spec`` names for ``arch``, recorded and present.

    spec: "imagenet" | "random" | an imported name | a file path (imported on the fly, named after its stem).
    "imagenet": the newest recorded (arch, "imagenet") file under ``artifacts``; else torchvision's torch-hub
    cache file (copied in as safetensors, hashed, recorded); else, unless ``offline``, torchvision's own
    hash-checked download (recorded the same way); else ConfigError, one line naming the file torchvision
    expects and ``atelier weights import FILE --arch A``. Rows are added to ``session``; the caller commits.
    """
    if spec == RANDOM:
        return RANDOM_RECORD
    _check_arch(arch)
    if not spec:
        raise ConfigError("--weights is empty; name 'imagenet', 'random', imported weights or a file")
    if spec == IMAGENET:
        if arch not in IMAGENET_FILES:
            raise ConfigError(f"{arch} has no ImageNet weights; use --weights random (or import a file of your own)")
        found, _ = _recorded(session, artifacts, arch, IMAGENET)
        if found is not None:
            return found
        cached = imagenet_cache_file(arch)
        if cached.is_file():
            _check_torchvision_hash(cached)
            return import_file(session, artifacts, cached, arch, IMAGENET, source=_torchvision_source(arch, cached))
        if not offline:
            return _download(session, artifacts, arch)
        raise ConfigError(
            f"no ImageNet weights for {arch} on record or in the torch cache, and atelier is offline: get "
            f"torchvision's {IMAGENET_FILES[arch]} ({IMAGENET_URL}{IMAGENET_FILES[arch]}) and run "
            f"`atelier weights import {IMAGENET_FILES[arch]} --arch {arch}` (random init only if asked for: weights 'random')")
    if NAME.match(spec):
        found, newest = _recorded(session, artifacts, arch, spec)
        if found is not None:
            return found
        if newest is not None and not Path(spec).expanduser().is_file():
            raise ConfigError(f"weights {spec!r} for {arch} are recorded, but {newest.path} is not under the "
                              f"artifacts root {artifacts}: is ATELIER_ARTIFACTS the storage the workers share?")
    path = Path(spec).expanduser()
    if path.is_file():
        return import_file(session, artifacts, path.resolve(), arch, _name_for_file(path))
    if os.sep in spec or path.suffix in (".safetensors", ".pt", ".pth"):
        raise ConfigError(f"weight file {spec} not found")
    raise ConfigError(f"no weights {spec!r} for {arch}: neither imported (see `atelier weights list`) nor a file")


def _name_for_file(path: Path) -> str:
    """The name a file given to --weights is recorded under: its stem, made a valid name, never a reserved one."""
    stem = re.sub(r"[^A-Za-z0-9._+-]", "-", path.name.split(".")[0] or path.name).strip("-.") or "file"
    if not stem[0].isalnum() or stem in (RANDOM, IMAGENET):
        stem = f"file-{stem}"
    return stem[:100]


def _torchvision_source(arch: str, path: Path) -> str:
    return f"torchvision IMAGENET1K_V1 {IMAGENET_URL}{IMAGENET_FILES[arch]} (from {path})"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_torchvision_hash(path: Path) -> None:
    """torchvision's files are named by the start of their sha256: a cached file that is not is refused."""
    prefix = re.search(r"-([0-9a-f]{8,})\.", path.name)
    if prefix and not sha256_file(path).startswith(prefix.group(1)):
        raise ConfigError(f"{path} is not torchvision's file (its sha256 does not start with {prefix.group(1)}): "
                          f"delete it, or import the right one with `atelier weights import`")


def _download(session, artifacts: Path, arch: str) -> WeightsRecord:
    """torchvision's own download into the torch cache, with its hash check; then recorded like a cached file."""
    from torch.hub import load_state_dict_from_url

    from worker.ml.weights import imagenet_weights

    url = imagenet_weights(arch).url
    try:
        load_state_dict_from_url(url, model_dir=str(imagenet_cache_file(arch).parent), progress=False,
                                 check_hash=True, map_location="cpu", weights_only=True)
    except Exception as err:  # no network, a proxy, a hash mismatch (torchvision deletes the partial file)
        reason = " ".join(str(err).split())[:200]
        raise ConfigError(f"cannot download {arch}'s ImageNet weights from {url} ({type(err).__name__}: {reason}); "
                          f"get {IMAGENET_FILES[arch]} elsewhere and run "
                          f"`atelier weights import {IMAGENET_FILES[arch]} --arch {arch}`") from None
    cached = imagenet_cache_file(arch)
    return import_file(session, artifacts, cached, arch, IMAGENET, source=_torchvision_source(arch, cached))


def import_file(session, artifacts: Path, file: Path, arch: str, name: str = IMAGENET,
                source: str | None = None) -> WeightsRecord:
    """Check ``file`` against ``arch`` and keep its backbone under the artifacts root, recorded.

    Reads safetensors, or a torch file with ``weights_only=True``; strict key and shape check against
    ``arch``'s backbone (features-only files, i.e. only ``features.*`` for VGG/AlexNet, are complete: the
    ImageNet classifier is never used). Writes ``weights/<arch>/<sha256>.safetensors`` with torchvision's
    names and records a row; a file of another architecture is refused with one line. Identical tensors
    already recorded for ``arch`` are not stored twice: that row's record is returned (with its name).
    """
    from worker.ml.weights import Template, read_state_dict, save_safetensors

    _check_arch(arch)
    if name == RANDOM or not NAME.match(name or ""):
        raise ConfigError(f"weights name {name!r} must be 1-100 letters, digits, '.', '_', '+' or '-', "
                          f"starting with a letter or digit, and not 'random'")
    if name == IMAGENET and arch not in IMAGENET_FILES:
        raise ConfigError(f"{arch} has no ImageNet weights: import its file under another --name")
    file = Path(file).expanduser()
    state, features_only = Template(arch).extract(read_state_dict(file), file.name)
    folder = artifact_path(artifacts, f"weights/{arch}")
    tmp = folder / f".import-{os.getpid()}-{threading.get_ident()}.safetensors"
    save_safetensors(state, tmp, {"arch": arch})  # one metadata key: equal tensors give an equal file
    digest = sha256_file(tmp)
    relative = f"weights/{arch}/{digest}.safetensors"
    os.replace(tmp, artifact_path(artifacts, relative))
    row = session.scalar(select(Weights).where(Weights.arch == arch, Weights.sha256 == digest))
    if row is None:
        try:
            with session.begin_nested():
                session.add(Weights(arch=arch, name=name, sha256=digest, path=relative,
                                    source=source or f"imported from {file.resolve()}", features_only=features_only))
        except IntegrityError:  # another submit recorded the same file a moment ago
            row = session.scalar(select(Weights).where(Weights.arch == arch, Weights.sha256 == digest))
    elif row.path != relative:
        row.path = relative
    if row is not None:
        return WeightsRecord(row.name, row.sha256, row.path)
    return WeightsRecord(name, digest, relative)


def listing(session, artifacts: Path) -> list[dict]:
    """Every recorded weight file, newest first per (arch, name), with whether this host sees it."""
    rows = session.scalars(select(Weights).order_by(Weights.arch, Weights.name, Weights.created_at.desc(),
                                                   Weights.id.desc())).all()
    return [{"arch": r.arch, "name": r.name, "source": r.source, "sha256": r.sha256, "path": r.path,
             "features_only": r.features_only, "created_at": r.created_at,
             "present": artifact_path(artifacts, r.path).is_file()} for r in rows]


# ---------------------------------------------------------------------------------------------------------------
# Worker side: the file of a record, checked.

_verified: dict[str, tuple[int, int, str]] = {}  # absolute path -> (size, mtime_ns, sha256) hashed by this process
_verified_lock = threading.Lock()


def local_file(artifacts: Path, record: WeightsRecord) -> Path | None:
    """The absolute file of ``record`` (None for random), after checking its sha256 against the record.

    A long-lived worker hashes a file once: (path, size, mtime) it verified are remembered per process.
    """
    if record.is_random:
        return None
    path = artifact_path(artifacts, record.path)
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(f"weights {record.name!r} ({record.path}) are not under this worker's artifacts root "
                          f"{artifacts}: is ATELIER_ARTIFACTS the storage the CLI hosts share?") from None
    key, seen = str(path), (st.st_size, st.st_mtime_ns, record.sha256)
    with _verified_lock:
        if _verified.get(key) == seen:
            return path
    digest = sha256_file(path)
    if digest != record.sha256:
        raise ConfigError(f"weights {record.name!r} at {record.path} have sha256 {digest[:12]}, not the recorded "
                          f"{record.sha256[:12]}: the file changed after it was recorded")
    with _verified_lock:
        _verified[key] = seen
    return path


def job_record(params: dict, key: str = "weights") -> WeightsRecord:
    """The weights record of a job's params; params written before the registry carry none (random only)."""
    if key in params:
        return WeightsRecord.from_json(params[key])
    named = (params.get("config") or {}).get("weights")
    if named not in (None, RANDOM):
        raise ConfigError(f"this job names weights {named!r} but carries no weights record: submit it again")
    return RANDOM_RECORD
