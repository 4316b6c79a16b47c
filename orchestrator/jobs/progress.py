"""Live progress until work ends: one bar per job (`train --wait`), one bar for a
whole sweep or style batch (`grid --wait`, `stylize --wait`, `status REF --watch`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy import func, select

from db.models import FINISHED_STATES, JOB_STATES, Job, StyleBatchPair, Stylization, Sweep, SweepCell
from orchestrator.consoles import err_console


def wait_for_jobs(lab, job_ids: list[str], poll: float = 0.5) -> None:
    """Block until every job has ended; exit 1 if any did not succeed."""
    rows = watch_jobs(lab, job_ids, poll)
    _fail_if_any(lab, [r.id for r in rows if r.status != "succeeded"])


def watch_jobs(lab, job_ids: list[str], poll: float = 0.5, timeout: float | None = None) -> list:
    """One bar per job on stderr until every job has ended or ``timeout`` seconds passed; returns the jobs'
    last (id, status, progress, message, error) rows (unfinished ones only after a timeout)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        tasks = {j: bar.add_task(j[:8], total=1.0, status="queued") for j in job_ids}
        while True:
            with lab.sessions() as s:
                rows = s.execute(
                    select(Job.id, Job.status, Job.progress, Job.message, Job.error).where(Job.id.in_(job_ids))
                ).all()
            for r in rows:
                bar.update(tasks[r.id], completed=r.progress, status=f"{r.status} {r.message or ''}".strip())
            if all(r.status in FINISHED_STATES for r in rows):
                return rows
            if deadline is not None and time.monotonic() >= deadline:
                return rows
            time.sleep(poll)


@dataclass
class GroupState:
    """Where a sweep or a style batch stands, from its jobs' rows."""

    counts: dict[str, int]
    pairs_done: int | None = None  # style batches: pairs with a stored result
    pairs_total: int | None = None
    waiting_for_followups: bool = False  # a sweep's fine-tune jobs are created when its cells end

    @property
    def jobs(self) -> int:
        return sum(self.counts.values())

    @property
    def ended(self) -> int:
        return sum(self.counts.get(s, 0) for s in FINISHED_STATES)

    @property
    def done(self) -> bool:
        return self.ended == self.jobs and not self.waiting_for_followups

    def summary(self) -> str:
        text = " ".join(f"{s} {self.counts.get(s, 0)}" for s in JOB_STATES if self.counts.get(s) or s != "cancelled")
        if self.pairs_total is not None:
            text += f" | pairs {self.pairs_done}/{self.pairs_total}"
        return text

    def to_json(self) -> dict:
        out = {s: self.counts.get(s, 0) for s in JOB_STATES} | {"jobs": self.jobs}
        if self.pairs_total is not None:
            out |= {"pairs_done": self.pairs_done, "pairs": self.pairs_total}
        return out


def group_state(session, group_id: str) -> GroupState:
    counts = dict(
        session.execute(select(Job.status, func.count()).where(Job.group_id == group_id).group_by(Job.status)).all()
    )
    state = GroupState(counts)
    sweep = session.get(Sweep, group_id)
    if sweep is not None:
        stages = set(session.scalars(select(SweepCell.stage).where(SweepCell.sweep_id == group_id)))
        state.waiting_for_followups = (
            bool(sweep.finetune_top) and "finetune" not in stages and counts.get("succeeded", 0) > 0
        )
        return state
    state.pairs_total = session.scalar(
        select(func.count()).select_from(StyleBatchPair).where(StyleBatchPair.batch_id == group_id)
    )
    state.pairs_done = session.scalar(
        select(func.count())
        .select_from(StyleBatchPair)
        .join(Stylization, Stylization.pair_hash == StyleBatchPair.pair_hash)
        .where(StyleBatchPair.batch_id == group_id)
    )
    return state


def watch_group(lab, group_id: str, label: str, follow: bool, poll: float = 1.0) -> GroupState:
    """One bar for a sweep or batch: jobs ended of all, counts by state, elapsed and ETA."""
    with Progress(
        TextColumn(f"{label} {group_id[:8]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[summary]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task(label, total=None, summary="")
        while True:
            with lab.sessions() as s:
                state = group_state(s, group_id)
            bar.update(task, total=state.jobs, completed=state.ended, summary=state.summary())
            if not follow or state.done:
                return state
            time.sleep(poll)


def wait_for_group(lab, group_id: str, label: str) -> None:
    """Block until every job of the group has ended; exit 1 if any did not succeed."""
    watch_group(lab, group_id, label, follow=True)
    with lab.sessions() as s:
        failed = s.scalars(select(Job.id).where(Job.group_id == group_id, Job.status != "succeeded")).all()
    _fail_if_any(lab, list(failed))


def _fail_if_any(lab, failed_ids: list[str]) -> None:
    if not failed_ids:
        return
    with lab.sessions() as s:
        rows = s.execute(select(Job.id, Job.status, Job.error).where(Job.id.in_(failed_ids))).all()
    for r in rows:
        click.echo(f"job {r.id} {r.status}: {' '.join((r.error or '').split())}".rstrip(), err=True)
    raise SystemExit(1)
