"""Running one job: claim it, keep its lease alive, record how it ended.

This is the only place that knows the protocol of docs/architecture.md, rule 1; tasks call
``execute`` and runners receive a ``JobContext``. No Celery here.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.artifacts import artifact_path
from core.errors import ConfigError, one_line
from core.settings import Settings
from db import jobs
from db.engine import make_engine, make_sessionmaker
from db.models import Job, Run
from worker.payload import check_params

log = logging.getLogger(__name__)


class Resubmit(Exception):
    """Run the job again with new params: it did not fail, it asked for less (a smaller batch after CUDA OOM)."""

    def __init__(self, params: dict[str, Any], reason: str):
        super().__init__(reason)
        self.params, self.reason = params, reason


class JobStopped(Exception):
    """The job must stop now: it was cancelled, or another worker owns it."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status  # "cancelled" | "lost"


@dataclass
class JobContext:
    settings: Settings
    sessions: sessionmaker[Session]
    claim: jobs.Claim
    job_id: str
    kind: str
    params: dict[str, Any]
    lost: threading.Event
    # Also told of progress (the Celery task sends it to Flower); the row stays the record.
    report: Callable[[float, str], None] | None = None
    last_tick: float = 0.0  # monotonic time of the last progress written by ``tick``
    tick_seconds: float = 1.0  # ``tick`` writes at most this often: a cancel is seen within about this long

    @property
    def artifacts(self) -> Path:
        return self.settings.artifacts

    def artifact(self, relative: str | Path) -> Path:
        """An artifact's absolute path, refused (ConfigError) if it leaves the artifacts root."""
        return artifact_path(self.settings.artifacts, relative)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits only while this worker still holds the claim."""
        with self.sessions.begin() as session:
            if not jobs.touch(session, self.claim):
                raise JobStopped(_why_stopped(session, self.job_id))
            yield session

    def tick(self, fraction: float, message: str) -> None:
        """``progress`` from inside a loop (a training step, an optimiser step): written at most once per
        ``tick_seconds``, so a cancel is seen within about that long and the store is not flooded."""
        if self.lost.is_set():
            raise JobStopped("lost")
        now = time.monotonic()
        if now - self.last_tick >= self.tick_seconds:
            self.last_tick = now
            self.progress(fraction, message)

    def progress(self, fraction: float, message: str) -> None:
        """Report progress; raises JobStopped if the job was cancelled or taken over."""
        if self.lost.is_set():
            raise JobStopped("lost")
        with self.sessions.begin() as session:
            if not jobs.touch(session, self.claim, progress=fraction, message=message):
                raise JobStopped(_why_stopped(session, self.job_id))
        if self.report is not None:
            try:
                self.report(fraction, message)
            except Exception:  # monitoring must never stop a job
                log.warning("job %s: progress report failed", self.job_id, exc_info=True)


def require_row(session: Session, model, key, what: str):
    """The row a job's params name, or a clear ConfigError (a params typo is not a crash)."""
    row = session.get(model, key)
    if row is None:
        raise ConfigError(f"{what} {key} does not exist in the store")
    return row


def job_run_id(ctx: JobContext) -> int:
    """The run a train job fills: the row whose runs.job_id names the job (its params name no run)."""
    with ctx.sessions() as session:
        run_id = session.scalar(select(Run.id).where(Run.job_id == ctx.job_id).order_by(Run.id).limit(1))
    if run_id is None:
        raise ConfigError(f"{ctx.kind} job {ctx.job_id} has no run in the store")
    return run_id


def _why_stopped(session: Session, job_id: str) -> str:
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    return "cancelled" if status == "cancelled" else "lost"


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: JobContext):
        super().__init__(name=f"heartbeat-{ctx.job_id[:8]}", daemon=True)
        self.ctx, self.stop = ctx, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.ctx.settings.heartbeat_seconds):
            try:
                with self.ctx.sessions.begin() as session:
                    alive = jobs.touch(session, self.ctx.claim)
            except Exception:  # a database hiccup: try again at the next beat
                log.exception("heartbeat failed for job %s", self.ctx.job_id)
                continue
            if not alive:
                self.ctx.lost.set()
                return


def worker_name() -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}"


def execute(
    settings: Settings,
    job_id: str,
    kind: str,
    runner: Callable[[JobContext], None],
    worker: str | None = None,
    report: Callable[[float, str], None] | None = None,
    sessions: sessionmaker[Session] | None = None,
) -> str:
    """Claim the ``kind`` job ``job_id`` and run it; returns how it ended.

    Unexpected errors are recorded, then re-raised. A message naming a job of
    another kind claims nothing, so a stray message cannot fail a good job.
    ``sessions``: the long-lived child's (worker.child); None opens an engine for this job only.
    """
    if sessions is not None:
        return _claim_and_run(settings, sessions, job_id, kind, runner, worker, report)
    engine = make_engine(settings.database_url)
    try:
        return _claim_and_run(settings, make_sessionmaker(engine), job_id, kind, runner, worker, report)
    finally:
        engine.dispose()


def _claim_and_run(settings, sessions, job_id, kind, runner, worker, report) -> str:
    with sessions.begin() as session:
        claim = jobs.claim(session, job_id, worker or worker_name(), settings.lease_seconds, kind=kind, pid=os.getpid())
        job = session.get(Job, job_id) if claim else None
    if claim is None or job is None:
        log.info("job %s not claimable (finished, running elsewhere or unknown): skipped", job_id)
        return "skipped"
    ctx = JobContext(settings, sessions, claim, job_id, job.kind, dict(job.params), threading.Event(), report)
    beat = _Heartbeat(ctx)
    beat.start()
    try:
        return _run(ctx, runner)
    finally:
        beat.stop.set()


def _run(ctx: JobContext, runner: Callable[[JobContext], None]) -> str:
    try:
        check_params(ctx.kind, ctx.params, ctx.artifacts)
        runner(ctx)
    except Resubmit as again:
        with ctx.sessions.begin() as session:
            requeued = jobs.requeue(session, ctx.claim, again.params, again.reason)
        log.warning("job %s: %s", ctx.job_id, again.reason if requeued else "resubmit of a lost claim refused")
        return "requeued" if requeued else "lost"
    except JobStopped as stop:
        # Nothing to write: `atelier cancel` already ended the row, or another worker owns it.
        log.warning("job %s stopped: %s", ctx.job_id, stop.status)
        return stop.status
    except ConfigError as err:
        # Bad input fails the same way on every attempt: fail now, no retry.
        return _end(ctx, "failed", str(err))
    except Exception as err:
        _end(ctx, "failed", f"{type(err).__name__}: {err}")
        raise  # so Celery and Flower see the failure too
    return _end(ctx, "succeeded")


def _end(ctx: JobContext, status: str, error: str | None = None) -> str:
    """Record how the job ended; what the row says when a cancel or another worker got there first."""
    with ctx.sessions.begin() as session:
        # One line, so `atelier status` and the store's views show it whole.
        if jobs.finish(session, ctx.claim, status, error and one_line(error)):
            return status
        log.warning("job %s: result of a lost claim refused", ctx.job_id)
        return _why_stopped(session, ctx.job_id)
