"""Live progress for jobs until they end (`--wait`)."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from db.models import FINISHED_STATES, Job
from orchestrator.commands.common import err_console


def wait_for_jobs(lab, job_ids: list[str], poll: float = 0.5) -> None:
    """Block until every job has ended; exit 1 if any did not succeed."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err_console) as bar:
        tasks = {j: bar.add_task(j[:8], total=1.0, status="queued") for j in job_ids}
        while True:
            with lab.sessions() as s:
                rows = s.execute(select(Job.id, Job.status, Job.progress, Job.message).where(Job.id.in_(job_ids))).all()
            for r in rows:
                bar.update(tasks[r.id], completed=r.progress, status=f"{r.status} {r.message or ''}".strip())
            if all(r.status in FINISHED_STATES for r in rows):
                break
            time.sleep(poll)
    failed = [r for r in rows if r.status != "succeeded"]
    if failed:
        with lab.sessions() as s:
            errors = {j.id: j.error for j in s.scalars(select(Job).where(Job.id.in_([r.id for r in failed])))}
        for r in failed:
            click.echo(f"job {r.id} {r.status}: {errors.get(r.id) or ''}".rstrip(), err=True)
        raise SystemExit(1)
