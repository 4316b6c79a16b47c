"""The prefork pool, replacing a finished child without waiting.

A worker's child is long-lived, and replaced after a CUDA OOM, an unexpected error or
when its memory passes the limit (worker.child). Celery starts the next child when it
sees the old one's exit, but that check can run a moment before the child has fully
exited; then the replacement waits for Celery's periodic check, every 5 s. When every
job ran in a fresh child, queued jobs sat idle 4-5 s behind about one child in four
(bench/load.py, 2 CPU workers). Checking every quarter second costs one
waitpid(WNOHANG) per child.
"""

from __future__ import annotations

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

MAINTAIN_EVERY_S = 0.25


class _QuickReplacingPool(AsynPool):
    @property
    def timers(self):
        return {self.maintain_pool: MAINTAIN_EVERY_S}


class FreshChildPool(TaskPool):
    """Celery's prefork pool with the quicker check; `atelier worker` sets it as ``worker_pool``."""

    Pool = _QuickReplacingPool
