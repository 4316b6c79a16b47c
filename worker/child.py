"""What a worker's long-lived child keeps between jobs, and when it is replaced.

See docs/architecture.md, rule 3: one process per GPU and one long-lived child. The parent never touches
CUDA; the child initialises it on its first job and keeps, for the jobs after it, one
SQLAlchemy engine and a small cache of what consecutive jobs reuse (the style VGG,
classifiers, uint8 image caches, frozen-backbone features), keyed by content so an
entry can never be stale. Between jobs the child drops per-job tensors and returns
cached CUDA blocks to the driver.

The child is replaced only when it should be: after a job that ended in CUDA OOM or an
unexpected error (its memory or CUDA state may be poisoned), or once its resident memory
passes ATELIER_WORKER_MAX_RSS_MB. Both use Celery's own per-child memory check, which
billiard runs after every task: ``request_fresh_child`` makes that check report the
child as over its limit, so the child exits cleanly after its result is sent and the pool
forks a new one (no lost result, no WorkerLostError).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.engine import make_engine, make_sessionmaker

log = logging.getLogger(__name__)

# Entries kept per kind: each can be large (a VGG, a dataset's uint8 cache on the GPU), so the bound is a
# count per kind, sized for a study's usual alternation (one VGG, a classifier or two, a dataset or two).
CAPACITY = {"vgg": 2, "classifier": 4, "images": 2, "features": 2}


class Resident:
    """A small LRU per kind of object, keyed by content (sha256s, paths with size and mtime, params hashes)."""

    def __init__(self, capacity: dict[str, int] | None = None):
        self.capacity = dict(capacity or CAPACITY)
        self.entries: dict[str, OrderedDict[Hashable, Any]] = {}
        self.hits = self.misses = 0

    def get(self, kind: str, key: Hashable, build: Callable[[], Any]) -> Any:
        """The cached object of ``kind`` under ``key``, built (and the least recently used one dropped) if absent."""
        entries = self.entries.setdefault(kind, OrderedDict())
        if key in entries:
            self.hits += 1
            entries.move_to_end(key)
            return entries[key]
        self.misses += 1
        value = build()
        entries[key] = value
        while len(entries) > self.capacity.get(kind, 1):
            entries.popitem(last=False)
        return value

    def clear(self) -> None:
        self.entries.clear()


class _Child:
    """The state of this process when it is a worker's child (None of it exists in the parent)."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.engine = None
        self.sessions: sessionmaker[Session] | None = None
        self.resident = Resident()
        self.fresh_reason: str | None = None
        self.jobs_run = 0


_child = _Child()


def start(settings: Settings) -> None:
    """In a freshly forked child (Celery's ``worker_process_init``): one engine for every job it runs."""
    if _child.engine is not None:
        _child.engine.dispose()
    _child.settings = settings
    _child.engine = make_engine(settings.database_url)
    _child.sessions = make_sessionmaker(_child.engine)
    _child.resident = Resident()
    _child.fresh_reason, _child.jobs_run = None, 0
    _install_replacement_check()


def sessions(settings: Settings) -> sessionmaker[Session]:
    """This child's sessions (started lazily where no ``worker_process_init`` ran, e.g. a unit test)."""
    if _child.sessions is None or _child.settings != settings:
        start(settings)
    return _child.sessions


def resident() -> Resident:
    return _child.resident


def file_key(path) -> tuple[str, int, int]:
    """A written-once artifact's cache key: its path with size and mtime (a rewrite changes them)."""
    st = os.stat(path)
    return str(path), st.st_size, st.st_mtime_ns


def request_fresh_child(reason: str) -> None:
    """Replace this child once the current task's result is sent (see the module docstring)."""
    if _child.fresh_reason is None:
        log.warning("child %d will be replaced after this job: %s", os.getpid(), reason)
    _child.fresh_reason = reason
    _child.resident.clear()


def after_job() -> None:
    """Between jobs: per-job tensors go, cached CUDA blocks return to the driver; the resident cache stays.

    Reference counting frees a finished job's tensors; a full collection (tens of ms, paid by every job) is
    worth it only where a tensor caught in a reference cycle would hold device memory: on CUDA.
    """
    _child.jobs_run += 1
    torch = sys.modules.get("torch")  # never import torch (hence CUDA) for this: a job that ran used it already
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def _install_replacement_check() -> None:
    """Route billiard's per-child RSS check through ``_rss_or_replace`` (in this process only)."""
    import billiard.pool
    import psutil

    process = psutil.Process()

    def _rss_or_replace() -> int:
        # billiard compares this (KiB) with worker_max_memory_per_child after every task and recycles the
        # child when it is larger: a child asked to go reports more than any limit. Its own mem_rss is the
        # *peak* RSS (getrusage's ru_maxrss), which never falls: one large job would then replace the child
        # after every later job, so the current resident size is what is compared.
        return sys.maxsize if _child.fresh_reason is not None else process.memory_info().rss // 1024

    billiard.pool.mem_rss = _rss_or_replace
