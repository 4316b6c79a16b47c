"""Artifact paths: job rows hold them relative to the artifacts root, and nothing
is read or written outside that root, whatever a row says.

A row is data a CLI (or anyone with database access) wrote; a worker on shared
storage must not follow ``../../home/x/.ssh`` or an absolute path out of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from core.errors import ConfigError


def artifact_path(root: Path, relative: str | Path) -> Path:
    """``root / relative``, refused unless it stays under ``root`` (symlinks resolved)."""
    text = str(relative)
    if not text or "\x00" in text:
        raise ConfigError(f"artifact path {text!r} is empty or holds a NUL byte")
    if Path(text).is_absolute():
        raise ConfigError(f"artifact path {text!r} is absolute; rows hold paths relative to the artifacts root")
    base = root.resolve()
    full = (base / text).resolve()
    if not full.is_relative_to(base):
        raise ConfigError(f"artifact path {text!r} leaves the artifacts root")
    return full


def features_path(params_hash: str) -> Path:
    """Where a features job stores its backbone features: named by its params, so equal jobs share one file."""
    return Path("features") / f"{params_hash}.safetensors"


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(temporary)`` beside ``path``, then rename it to ``path``: a reader never sees half a file.

    The temporary name, ``.{name}.{pid}.{thread id}.part`` in the same folder (so the rename stays on one
    file system), is unique to the writer; it is removed when ``write`` raises, leaving ``path`` untouched.
    Missing parent folders are created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
