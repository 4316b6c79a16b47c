"""Weight files in and out of the store: import (read, check against the arch, keep as
safetensors, record), resolve a ``--weights`` spec, and the worker's checked load.

In a cluster the CLI host and the workers are different machines and torchvision's
cache is per machine, so every weight file a job may load is kept under the shared
artifacts root (``weights/<arch>/<sha256>.safetensors``, torchvision's key names,
backbone only) and recorded in the ``weights`` table with its sha256. The worker
refuses a file whose sha256 is not the recorded one (``local_file``).

Reading tensors needs torch, which the CLI never imports: ``atelier weights import``
and a first ``--weights imagenet`` run this module as a program
(``python -m worker.weights_store``, see ``orchestrator.jobs.weights``).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from core import weights as names
from core.artifacts import artifact_path
from core.errors import ConfigError, one_line
from core.weights import IMAGENET, IMAGENET_FILES, IMAGENET_URL, NAME, RANDOM, RANDOM_RECORD, WeightsRecord
from db import weights as registry


def resolve(session, artifacts: Path, arch: str, spec: str, offline: bool) -> WeightsRecord:
    """The weights ``spec`` names for ``arch``, recorded and present under ``artifacts``.

    spec: "imagenet" | "random" | an imported name | a file path (imported on the fly, named after its stem).
    "imagenet": the newest recorded (arch, "imagenet") file under ``artifacts``; else torchvision's torch-hub
    cache file (copied in as safetensors, hashed, recorded); else, unless ``offline``, torchvision's own
    hash-checked download (recorded the same way); else ConfigError, one line naming the file torchvision
    expects and ``atelier weights import FILE --arch A``. Rows are added to ``session``; the caller commits.
    """
    if spec == RANDOM:
        return RANDOM_RECORD
    names.check_arch(arch)
    if not spec:
        raise ConfigError("--weights is empty; name 'imagenet', 'random', imported weights or a file")
    if spec == IMAGENET:
        if arch not in IMAGENET_FILES:
            raise ConfigError(f"{arch} has no ImageNet weights; use --weights random (or import a file of your own)")
        found, _ = registry.recorded(session, artifacts, arch, IMAGENET)
        if found is not None:
            return found
        cached = names.imagenet_cache_file(arch)
        if cached.is_file():
            names.check_torchvision_hash(cached)
            return import_file(
                session, artifacts, cached, arch, IMAGENET, source=names.torchvision_source(arch, cached)
            )
        if not offline:
            return _download(session, artifacts, arch)
        raise ConfigError(
            f"no ImageNet weights for {arch} on record or in the torch cache, and atelier is offline: get "
            f"torchvision's {IMAGENET_FILES[arch]} ({IMAGENET_URL}{IMAGENET_FILES[arch]}) and run "
            f"`atelier weights import {IMAGENET_FILES[arch]} --arch {arch}` (random init only if asked for: weights 'random')"
        )
    if NAME.match(spec):
        found, newest = registry.recorded(session, artifacts, arch, spec)
        if found is not None:
            return found
        if newest is not None and not Path(spec).expanduser().is_file():
            raise ConfigError(
                f"weights {spec!r} for {arch} are recorded, but {newest.path} is not under the "
                f"artifacts root {artifacts}: is ATELIER_ARTIFACTS the storage the workers share?"
            )
    path = Path(spec).expanduser()
    if path.is_file():
        return import_file(session, artifacts, path.resolve(), arch, names.name_for_file(path))
    if os.sep in spec or path.suffix in (".safetensors", ".pt", ".pth"):
        raise ConfigError(f"weight file {spec} not found")
    raise ConfigError(f"no weights {spec!r} for {arch}: neither imported (see `atelier weights list`) nor a file")


def _download(session, artifacts: Path, arch: str) -> WeightsRecord:
    """torchvision's own download into the torch cache, with its hash check; then recorded like a cached file."""
    from torch.hub import load_state_dict_from_url

    from worker.ml.weights import imagenet_weights

    url = imagenet_weights(arch).url
    try:
        load_state_dict_from_url(
            url,
            model_dir=str(names.imagenet_cache_file(arch).parent),
            progress=False,
            check_hash=True,
            map_location="cpu",
            weights_only=True,
        )
    except Exception as err:  # no network, a proxy, a hash mismatch (torchvision deletes the partial file)
        reason = " ".join(str(err).split())[:200]
        raise ConfigError(
            f"cannot download {arch}'s ImageNet weights from {url} ({type(err).__name__}: {reason}); "
            f"get {IMAGENET_FILES[arch]} elsewhere and run "
            f"`atelier weights import {IMAGENET_FILES[arch]} --arch {arch}`"
        ) from None
    cached = names.imagenet_cache_file(arch)
    return import_file(session, artifacts, cached, arch, IMAGENET, source=names.torchvision_source(arch, cached))


def import_file(
    session, artifacts: Path, file: Path, arch: str, name: str = IMAGENET, source: str | None = None
) -> WeightsRecord:
    """Check ``file`` against ``arch`` and keep its backbone under the artifacts root, recorded.

    Reads safetensors, or a torch file with ``weights_only=True``; strict key and shape check against
    ``arch``'s backbone (features-only files, i.e. only ``features.*`` for VGG/AlexNet, are complete: the
    ImageNet classifier is never used). Writes ``weights/<arch>/<sha256>.safetensors`` with torchvision's
    names and records a row; a file of another architecture is refused with one line. Identical tensors
    already recorded for ``arch`` are not stored twice: that row's record is returned (with its name).
    """
    from worker.ml.weights import Template, read_state_dict, save_safetensors

    names.check_arch(arch)
    if name == RANDOM or not NAME.match(name or ""):
        raise ConfigError(
            f"weights name {name!r} must be 1-100 letters, digits, '.', '_', '+' or '-', "
            f"starting with a letter or digit, and not 'random'"
        )
    if name == IMAGENET and arch not in IMAGENET_FILES:
        raise ConfigError(f"{arch} has no ImageNet weights: import its file under another --name")
    file = Path(file).expanduser()
    state, features_only = Template(arch).extract(read_state_dict(file), file.name)
    folder = artifact_path(artifacts, f"weights/{arch}")
    tmp = folder / f".import-{os.getpid()}-{threading.get_ident()}.safetensors"
    save_safetensors(state, tmp, {"arch": arch})  # one metadata key: equal tensors give an equal file
    digest = names.sha256_file(tmp)
    relative = f"weights/{arch}/{digest}.safetensors"
    os.replace(tmp, artifact_path(artifacts, relative))
    return registry.record_file(
        session, arch, name, digest, relative, source or f"imported from {file.resolve()}", features_only
    )


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
        raise ConfigError(
            f"weights {record.name!r} ({record.path}) are not under this worker's artifacts root "
            f"{artifacts}: is ATELIER_ARTIFACTS the storage the CLI hosts share?"
        ) from None
    key, seen = str(path), (st.st_size, st.st_mtime_ns, record.sha256)
    with _verified_lock:
        if _verified.get(key) == seen:
            return path
    digest = names.sha256_file(path)
    if digest != record.sha256:
        raise ConfigError(
            f"weights {record.name!r} at {record.path} have sha256 {digest[:12]}, not the recorded "
            f"{record.sha256[:12]}: the file changed after it was recorded"
        )
    with _verified_lock:
        _verified[key] = seen
    return path


# ---------------------------------------------------------------------------------------------------------------
# The program the CLI runs: `python -m worker.weights_store resolve ARCH SPEC` or `import FILE ARCH NAME`.


def main(argv: list[str]) -> int:
    """Resolve or import in one transaction; print the record as JSON, or one line on stderr and exit 1."""
    from core.settings import Settings
    from db.engine import make_engine, make_sessionmaker

    try:
        settings = Settings.from_env()
        engine = make_engine(settings.database_url)
        try:
            with make_sessionmaker(engine).begin() as session:
                if argv[:1] == ["resolve"] and len(argv) == 3:
                    record = resolve(session, settings.artifacts, argv[1], argv[2], settings.offline)
                elif argv[:1] == ["import"] and len(argv) == 4:
                    record = import_file(session, settings.artifacts, Path(argv[1]).resolve(), argv[2], argv[3])
                else:
                    raise ConfigError("usage: python -m worker.weights_store resolve ARCH SPEC | import FILE ARCH NAME")
        finally:
            engine.dispose()
    except ConfigError as err:
        print(one_line(str(err)), file=sys.stderr)
        return 1
    print(json.dumps(record.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
