"""`atelier status` and `atelier resume`: where jobs stand, and recovering lost ones."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy import func, select

from db import jobs
from db.models import FINISHED_STATES, Job, Sweep, SweepCell, utcnow
from orchestrator import enqueue
from orchestrator.commands.common import console, duration, pass_lab, print_json, table
from worker.ml.errors import ConfigError


def find_job(session, ref: str) -> Job:
    """A job by id or unambiguous id prefix."""
    matches = session.scalars(select(Job).where(Job.id.startswith(ref)).limit(2)).all()
    if not matches:
        raise ConfigError(f"no job {ref!r}")
    if len(matches) > 1:
        raise ConfigError(f"job prefix {ref!r} is ambiguous; give more characters")
    return matches[0]


def sweep_counts(session, sweep_id: str) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).join(SweepCell, SweepCell.job_id == Job.id)
                           .where(SweepCell.sweep_id == sweep_id).group_by(Job.status)).all()
    return {status: n for status, n in rows}


def find_sweep(session, ref: str) -> Sweep | None:
    matches = session.scalars(select(Sweep).where(Sweep.id.startswith(ref)).limit(2)).all()
    return matches[0] if len(matches) == 1 else None


def show_sweep(lab, sweep_id: str, watch: bool) -> None:
    with Progress(TextColumn("sweep {task.fields[sid]}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("sweep", total=None, sid=sweep_id[:8], counts="")
        while True:
            with lab.sessions() as s:
                c = sweep_counts(s, sweep_id)
            ended = sum(c.get(k, 0) for k in FINISHED_STATES)
            bar.update(task, total=sum(c.values()), completed=ended,
                       counts=" ".join(f"{k} {c.get(k, 0)}" for k in ("queued", "running", "succeeded", "failed", "cancelled")))
            if not watch or ended == sum(c.values()):
                break
            time.sleep(1)


@click.command("status")
@click.argument("job", required=False)
@click.option("--limit", type=click.IntRange(1), default=30, show_default=True)
@click.option("--watch", is_flag=True, help="For a sweep: refresh until every cell has ended.")
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def status_cmd(lab, job, limit, watch, as_json) -> None:
    """Jobs with state, progress, worker, duration and error (or one JOB or SWEEP in full)."""
    if job:
        with lab.sessions() as s:
            sweep = find_sweep(s, job)
            counts = sweep_counts(s, sweep.id) if sweep else None
        if sweep is not None:
            if as_json:
                print_json({"sweep": sweep.id, **counts})
            else:
                show_sweep(lab, sweep.id, watch)
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
    sent = enqueue.send(lab.celery(), queued)
    click.echo(f"re-enqueued {sent} job(s) ({len(requeued)} recovered from lost workers)")


def jobs_of(session, ref: str) -> tuple[str, list[Job]]:
    """The jobs a reference names: a sweep, a style batch (its group) or one job."""
    from db.models import StyleBatch

    sweep = find_sweep(session, ref)
    group = sweep.id if sweep else None
    if group is None:
        batch = session.scalars(select(StyleBatch).where(StyleBatch.id.startswith(ref)).limit(2)).all()
        group = batch[0].id if len(batch) == 1 else None
    if group is not None:
        return group, list(session.scalars(select(Job).where(Job.group_id == group)))
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
        for j in live:
            # A queued job's message may still arrive: its claim then fails, so it never runs.
            j.status, j.finished_at, j.error = "cancelled", utcnow(), "cancelled by user"
    click.echo(f"{name}: cancelled {len(live)} job(s) ({len(found) - len(live)} had already ended)")


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
    enqueue.send(celery, ready)
    click.echo(f"{name}: re-queued {len(again)} job(s)")


COMMANDS = [status_cmd, resume_cmd, cancel_cmd, retry_cmd]
