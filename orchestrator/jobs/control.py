"""Steering jobs that already exist: resume, cancel, retry.

Plain functions that return what happened; the click commands in
orchestrator/commands/control.py only print it. Every status change is one
compare-and-set UPDATE in ``db.jobs``, so a worker finishing a job at the same
moment either wins (the job is left out here) or loses (its result is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core import messages
from db import jobs
from db.models import Job
from orchestrator.jobs.lookups import jobs_of


@dataclass(frozen=True)
class Change:
    """What a command did to the jobs a reference names."""

    name: str  # the sweep, style batch or job id the reference named
    found: int  # jobs it names
    changed: list[str]  # the ids this call moved; the others were in no state to move
    note: str | None = None  # worth telling the user, though the rows are right (messages not revoked)


def resume(lab) -> tuple[int, int]:
    """Re-enqueue queued jobs and those of lost workers: (messages sent, jobs recovered from lost workers).

    Safe to run any time: a job already in the broker runs once, because a
    worker must claim its row first, and a job whose dependency has not
    succeeded yet cannot be claimed.
    """
    with lab.sessions.begin() as s:
        requeued = jobs.expire_leases(s, lab.settings.lease_seconds)
        queued = s.scalars(select(Job).where(Job.status == "queued")).all()
    return messages.send(lab.celery(), queued), len(requeued)


def cancel(lab, ref: str) -> Change:
    """Cancel the queued and running jobs ``ref`` names; running ones stop at their next epoch or chunk."""
    with lab.sessions.begin() as s:
        name, found = jobs_of(s, ref)
        # Task ids as messages.send names them (a claim bumps attempts, so a running job's differs).
        queued = {j.id: f"{j.id}.{j.attempts}" for j in found if j.status == "queued"}
        changed = jobs.cancel(s, [j.id for j in found])
    task_ids = [queued[i] for i in changed if i in queued]
    return Change(name, len(found), changed, _revoke(lab, task_ids) if task_ids else None)


def _revoke(lab, task_ids: list[str]) -> str | None:
    """Tell the workers to drop the queued messages (Flower then shows them revoked); why not, if it failed.

    Only a courtesy: a message that still arrives fails its claim on the cancelled row.
    """
    try:
        lab.celery().control.revoke(task_ids)
    except Exception as err:  # the rows are already cancelled, which is what counts
        return f"queued messages not revoked ({type(err).__name__}); workers will skip them"
    return None


def retry(lab, ref: str) -> Change:
    """Re-queue the failed and cancelled jobs ``ref`` names; those that succeeded are kept."""
    celery = lab.celery()  # the broker first: a store change whose messages cannot be sent helps nobody
    with lab.sessions.begin() as s:
        name, found = jobs_of(s, ref)
        again = set(jobs.retry(s, [j.id for j in found]))
        # A job waiting for another retried one is sent when that one succeeds (followups.release_dependants).
        ready = [j for j in found if j.id in again and j.depends_on not in again]
    messages.send(celery, ready, again=True)  # fresh task ids: a job cancelled while queued had its id revoked
    return Change(name, len(found), sorted(again))
