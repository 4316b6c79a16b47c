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

from db.models import Job, new_id, utcnow

Dependency = aliased(Job)


def params_hash(kind: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_job(kind: str, params: dict[str, Any], *, queue: str = "gpu", max_attempts: int = 3) -> Job:
    """A queued job, not yet in any session (for adding many at once)."""
    return Job(
        id=new_id(), kind=kind, queue=queue, params=params, params_hash=params_hash(kind, params),
        status="queued", max_attempts=max_attempts, attempts=0, progress=0.0,
    )


def create_job(session: Session, kind: str, params: dict[str, Any], *, queue: str = "gpu", max_attempts: int = 3) -> Job:
    job = new_job(kind, params, queue=queue, max_attempts=max_attempts)
    session.add(job)
    session.flush()
    return job


@dataclass(frozen=True)
class Claim:
    job_id: str
    token: str
    attempt: int


def claim(session: Session, job_id: str, worker: str, lease_seconds: float, now: datetime | None = None,
          kind: str | None = None) -> Claim | None:
    """Take a queued job (of ``kind``, when given), or a running one whose lease expired. None if taken or finished."""
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
            status="running", worker=worker, lease_token=token, heartbeat_at=now,
            started_at=now, attempts=Job.attempts + 1, error=None,
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


def release(session: Session, claim: Claim, error: str) -> str:
    """A claimed job failed in a way worth retrying: back to the queue, or failed for good."""
    job = session.get(Job, claim.job_id)
    if job is None or job.lease_token != claim.token or job.status != "running":
        return "lost"
    if job.attempts < job.max_attempts:
        job.status, job.error, job.lease_token = "queued", error, None
        return "queued"
    job.status, job.error, job.finished_at = "failed", error, utcnow()
    return "failed"


def expire_leases(session: Session, lease_seconds: float, now: datetime | None = None) -> list[Job]:
    """Jobs whose worker stopped heartbeating: requeued while attempts remain, else failed.

    Returns the requeued jobs; the caller sends their messages after commit.
    """
    now = now or utcnow()
    stale = now - timedelta(seconds=lease_seconds)
    lost = session.scalars(
        select(Job).where(Job.status == "running", Job.heartbeat_at < stale).with_for_update(skip_locked=True)
    ).all()
    requeued = []
    for job in lost:
        silent = (now - job.heartbeat_at).total_seconds()
        reason = f"worker {job.worker} lost: no heartbeat for {silent:.0f}s (attempt {job.attempts} of {job.max_attempts})"
        if job.attempts < job.max_attempts:
            job.status, job.error, job.lease_token = "queued", reason, None
            requeued.append(job)
        else:
            job.status, job.error, job.finished_at, job.lease_token = "failed", reason, now, None
    return requeued
