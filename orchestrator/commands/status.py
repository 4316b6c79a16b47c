"""`atelier status` and `atelier resume`: where jobs stand, and recovering lost ones."""

from __future__ import annotations

import click
from sqlalchemy import select

from db import jobs
from db.models import Job, StyleBatch, Sweep, utcnow
from core import messages
from orchestrator.commands.common import console, duration, pass_lab, print_json, table
from orchestrator.commands.wait import group_state, watch_group
from core.errors import ConfigError


def find_job(session, ref: str) -> Job:
    """A job by id or unambiguous id prefix."""
    matches = session.scalars(select(Job).where(Job.id.startswith(ref)).limit(2)).all()
    if not matches:
        raise ConfigError(f"no job {ref!r}")
    if len(matches) > 1:
        raise ConfigError(f"job prefix {ref!r} is ambiguous; give more characters")
    return matches[0]


def find_sweep(session, ref: str) -> Sweep | None:
    matches = session.scalars(select(Sweep).where(Sweep.id.startswith(ref)).limit(2)).all()
    return matches[0] if len(matches) == 1 else None


def find_group(session, ref: str) -> tuple[str, str] | None:
    """(label, id) of the sweep or style batch that ``ref`` (an id or unambiguous prefix) names, if any."""
    sweep = find_sweep(session, ref)
    if sweep is not None:
        return "sweep", sweep.id
    batches = session.scalars(select(StyleBatch.id).where(StyleBatch.id.startswith(ref)).limit(2)).all()
    return ("batch", batches[0]) if len(batches) == 1 else None


@click.command("status")
@click.argument("job", required=False)
@click.option("--limit", type=click.IntRange(1), default=30, show_default=True)
@click.option("--watch", is_flag=True, help="For a sweep or style batch: refresh until every job has ended.")
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def status_cmd(lab, job, limit, watch, as_json) -> None:
    """Jobs with state, progress, worker, duration and error (or one JOB, SWEEP or BATCH in full)."""
    if job:
        with lab.sessions() as s:
            group = find_group(s, job)
            state = group_state(s, group[1]) if group else None
        if group is not None:
            label, group_id = group
            if as_json:
                print_json({label: group_id, **state.to_json()})
            else:
                state = watch_group(lab, group_id, label, follow=watch)
                click.echo(f"{label} {group_id}: {state.summary()}")
            return
    with lab.sessions() as s:
        rows = [find_job(s, job)] if job else s.scalars(select(Job).order_by(Job.created_at.desc()).limit(limit)).all()
    if as_json:
        print_json([{c: getattr(j, c) for c in ("id", "kind", "status", "progress", "message", "attempts", "worker",
                                                 "created_at", "started_at", "finished_at", "error")} for j in rows])
        return
    console.print(table(None, ("job", "kind", "status", "progress", "worker", "tries", "duration", "note / error"), [
        (j.id if job else j.id[:8], j.kind, j.status, f"{j.progress:.0%}", j.worker, j.attempts,
         duration(j.started_at, j.finished_at), j.error or j.message)
        for j in rows
    ]))


@click.command("resume")
@pass_lab
def resume_cmd(lab) -> None:
    """Re-enqueue every queued job and every running job whose worker is gone.

    Safe to run any time: a job already in the broker runs once, because a
    worker must claim its row first, and a job whose dependency has not
    succeeded yet cannot be claimed.
    """
    with lab.sessions.begin() as s:
        requeued = jobs.expire_leases(s, lab.settings.lease_seconds)
        queued = s.scalars(select(Job).where(Job.status == "queued")).all()
    sent = messages.send(lab.celery(), queued)
    click.echo(f"re-enqueued {sent} job(s) ({len(requeued)} recovered from lost workers)")


def jobs_of(session, ref: str) -> tuple[str, list[Job]]:
    """The jobs a reference names: a sweep, a style batch (its group) or one job."""
    group = find_group(session, ref)
    if group is not None:
        return group[1], list(session.scalars(select(Job).where(Job.group_id == group[1])))
    job = find_job(session, ref)
    return job.id, [job]


@click.command("cancel")
@click.argument("ref")
@pass_lab
def cancel_cmd(lab, ref) -> None:
    """Cancel a sweep, a style batch or a job: queued jobs never start, running ones stop at the next epoch or chunk."""
    with lab.sessions.begin() as s:
        name, found = jobs_of(s, ref)
        live = [j for j in found if j.status in ("queued", "running")]
        # Task ids as messages.send names them; a running job stops by itself at its next epoch or chunk.
        queued = [f"{j.id}.{j.attempts}" for j in live if j.status == "queued"]
        for j in live:
            j.status, j.finished_at, j.error = "cancelled", utcnow(), "cancelled by user"
    click.echo(f"{name}: cancelled {len(live)} job(s) ({len(found) - len(live)} had already ended)")
    if queued:
        _revoke(lab, queued)


def _revoke(lab, task_ids: list[str]) -> None:
    """Tell the workers to drop the queued messages (Flower then shows them revoked).

    Only a courtesy: a message that still arrives fails its claim on the cancelled row.
    """
    try:
        lab.celery().control.revoke(task_ids)
    except Exception as err:  # the rows are already cancelled, which is what counts
        click.echo(f"note: queued messages not revoked ({type(err).__name__}); workers will skip them", err=True)


@click.command("retry")
@click.argument("ref")
@click.option("--failed", "only_failed", is_flag=True, required=True, help="Re-run the failed (and cancelled) jobs only.")
@pass_lab
def retry_cmd(lab, ref, only_failed) -> None:
    """Re-run the jobs of a sweep, batch or job that failed; finished ones are kept."""
    celery = lab.celery()
    with lab.sessions.begin() as s:
        name, found = jobs_of(s, ref)
        again = [j for j in found if j.status in ("failed", "cancelled")]
        for j in again:
            j.status, j.error, j.attempts, j.finished_at, j.lease_token = "queued", None, 0, None, None
        ready = [j for j in again if j.depends_on is None or j.depends_on not in {a.id for a in again}]
    messages.send(celery, ready)
    click.echo(f"{name}: re-queued {len(again)} job(s)")


COMMANDS = [status_cmd, resume_cmd, cancel_cmd, retry_cmd]
