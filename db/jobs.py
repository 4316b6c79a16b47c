"""A job's life in the store: created, claimed, kept alive, finished.

Every transition is a single compare-and-set UPDATE, so two workers that get
the same message (a redelivery, a re-enqueue by ``atelier resume``) cannot both
run it, and a worker that lost its claim cannot write over its successor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, true, update
from sqlalchemy.orm import Session, aliased

from core.params import canonical
from db.engine import in_slices
from db.models import Job, new_id, utcnow

Dependency = aliased(Job)


def params_hash(kind: str, params: dict[str, Any]) -> str:
    """sha256 (hex) of ``kind`` and ``params`` as canonical JSON: sorted keys, no whitespace, numbers
    normalised (``core.params.canonical``: 1 and 1.0 hash equal), so identical finished work is found again."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    text = json.dumps(
        canonical({"kind": kind, "params": params}), sort_keys=True, separators=(",", ":"), allow_nan=False
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def new_job(kind: str, params: dict[str, Any], *, queue: str = "gpu", max_attempts: int = 3) -> Job:
    """A queued job, not yet in any session (for adding many at once)."""
    return Job(
        id=new_id(),
        kind=kind,
        queue=queue,
        params=params,
        params_hash=params_hash(kind, params),
        status="queued",
        max_attempts=max_attempts,
        attempts=0,
        progress=0.0,
    )


def create_job(
    session: Session, kind: str, params: dict[str, Any], *, queue: str = "gpu", max_attempts: int = 3
) -> Job:
    job = new_job(kind, params, queue=queue, max_attempts=max_attempts)
    session.add(job)
    session.flush()
    return job


@dataclass(frozen=True)
class Claim:
    job_id: str
    token: str
    attempt: int


def claim(
    session: Session,
    job_id: str,
    worker: str,
    lease_seconds: float,
    now: datetime | None = None,
    kind: str | None = None,
    pid: int | None = None,
) -> Claim | None:
    """Take a queued job (of ``kind``, when given), or a running one whose lease expired. None if taken or finished.

    ``pid``: the claiming process, recorded as ``worker_pid``."""
    now = now or utcnow()
    token = new_id()
    stale = now - timedelta(seconds=lease_seconds)
    # A job waiting for another (a grid cell for its features) cannot start early, whoever sent it.
    ready = select(Dependency.id).where(Dependency.status == "succeeded")
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.kind == kind if kind is not None else true(),
            Job.attempts < Job.max_attempts,
            or_(Job.depends_on.is_(None), Job.depends_on.in_(ready)),
            or_(Job.status == "queued", and_(Job.status == "running", Job.heartbeat_at < stale)),
        )
        .values(
            status="running",
            worker=worker,
            worker_pid=pid,
            lease_token=token,
            heartbeat_at=now,
            started_at=now,
            attempts=Job.attempts + 1,
            error=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    attempt = session.scalar(select(Job.attempts).where(Job.id == job_id))
    return Claim(job_id, token, attempt)


def touch(session: Session, claim: Claim, *, progress: float | None = None, message: str | None = None) -> bool:
    """Heartbeat (and optionally report progress). False means the claim is lost."""
    values: dict[str, Any] = {"heartbeat_at": utcnow()}
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    if message is not None:
        values["message"] = message
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.lease_token == claim.token, Job.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def finish(session: Session, claim: Claim, status: str, error: str | None = None) -> bool:
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
    if status == "succeeded":
        values["progress"] = 1.0
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.lease_token == claim.token, Job.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def requeue(session: Session, claim: Claim, params: dict[str, Any], reason: str) -> bool:
    """Back to the queue with new params, without spending an attempt (the job asked for less, it did not fail)."""
    result = session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.lease_token == claim.token, Job.status == "running")
        .values(status="queued", params=params, lease_token=None, message=reason, max_attempts=Job.max_attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def cancel(session: Session, job_ids: list[str]) -> list[str]:
    """Cancel those of ``job_ids`` still queued or running; the ids this call changed.

    A worker finishing at the same moment loses (its ``finish`` returns False) or wins
    (the job is left out here): never both.
    """
    return _move(
        session, job_ids, ("queued", "running"), status="cancelled", finished_at=utcnow(), error="cancelled by user"
    )


def retry(session: Session, job_ids: list[str]) -> list[str]:
    """Back to the queue with fresh attempts, those of ``job_ids`` still failed or cancelled; the ids changed."""
    return _move(
        session,
        job_ids,
        ("failed", "cancelled"),
        status="queued",
        attempts=0,
        error=None,
        finished_at=None,
        lease_token=None,
    )


def fail_waiting(session: Session, depends_on: str, reason: str) -> list[str]:
    """Fail the queued jobs waiting for ``depends_on`` (which will never succeed now); the ids changed."""
    return session.scalars(
        update(Job)
        .where(Job.depends_on == depends_on, Job.status == "queued")
        .values(status="failed", error=reason, finished_at=utcnow())
        .returning(Job.id)
        .execution_options(synchronize_session="fetch")
    ).all()


def _move(session: Session, job_ids: list[str], expected: tuple[str, ...], **values: Any) -> list[str]:
    """Set ``values`` on each of ``job_ids`` whose status is still one of ``expected``; the ids changed."""
    changed: list[str] = []
    # One UPDATE per slice (a big style batch overflows one IN list); each row still moves atomically.
    for ids in in_slices(list(job_ids)):
        changed += session.scalars(
            update(Job)
            .where(Job.id.in_(ids), Job.status.in_(expected))
            .values(**values)
            .returning(Job.id)
            # "fetch": rows the caller already loaded in this session show the new state too.
            .execution_options(synchronize_session="fetch")
        ).all()
    return changed


def expire_leases(session: Session, lease_seconds: float, now: datetime | None = None) -> list[Job]:
    """Jobs whose worker stopped heartbeating: requeued while attempts remain, else failed.

    Returns the requeued jobs; the caller sends their messages after commit.
    """
    now = now or utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    lost = session.execute(
        select(Job.id, Job.worker, Job.lease_token, Job.heartbeat_at, Job.attempts, Job.max_attempts).where(
            Job.status == "running", Job.heartbeat_at < stale
        )
    ).all()
    requeued = []
    for job in lost:
        silent = (now - job.heartbeat_at).total_seconds()
        reason = (
            f"worker {job.worker} lost: no heartbeat for {silent:.0f}s (attempt {job.attempts} of {job.max_attempts})"
        )
        again = job.attempts < job.max_attempts
        values = {"status": "queued"} if again else {"status": "failed", "finished_at": now}
        # Still the lease read above, still silent: a late heartbeat, a new claim, a cancel or
        # another reaper that got there first keeps the row as it is.
        result = session.execute(
            update(Job)
            .where(
                Job.id == job.id, Job.status == "running", Job.lease_token == job.lease_token, Job.heartbeat_at < stale
            )
            .values(error=reason, lease_token=None, **values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1 and again:
            requeued.append(job.id)
    return _rows(session, requeued)


def _rows(session: Session, job_ids: list[str]) -> list[Job]:
    """The jobs ``job_ids`` as they are now (rows already in the session refreshed)."""
    rows: list[Job] = []
    for ids in in_slices(job_ids):
        rows += session.scalars(select(Job).where(Job.id.in_(ids)).execution_options(populate_existing=True)).all()
    return rows
