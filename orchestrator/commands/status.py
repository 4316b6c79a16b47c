"""`atelier status`: where jobs stand (resume, cancel and retry are in control.py)."""

from __future__ import annotations

import click
from sqlalchemy import select

from db.models import Job
from orchestrator.commands.common import console, duration, pass_lab, print_json, table
from orchestrator.jobs.lookups import find_group, find_job
from orchestrator.jobs.progress import group_state, watch_group


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
        print_json(
            [
                {
                    c: getattr(j, c)
                    for c in (
                        "id",
                        "kind",
                        "status",
                        "progress",
                        "message",
                        "attempts",
                        "worker",
                        "worker_pid",
                        "created_at",
                        "started_at",
                        "finished_at",
                        "error",
                    )
                }
                for j in rows
            ]
        )
        return
    console.print(
        table(
            None,
            ("job", "kind", "status", "progress", "worker", "tries", "duration", "note / error"),
            [
                (
                    j.id if job else j.id[:8],
                    j.kind,
                    j.status,
                    f"{j.progress:.0%}",
                    j.worker,
                    j.attempts,
                    duration(j.started_at, j.finished_at),
                    j.error or j.message,
                )
                for j in rows
            ],
        )
    )


COMMANDS = [status_cmd]
