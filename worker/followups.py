"""What happens when a job ends, beyond its own row: jobs waiting for it, and sweep follow-ups.

Runs in the worker right after a job finished (succeeded or not), in its own
transactions, so a crash here loses nothing that `atelier resume` cannot redo.
"""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from core.config import TrainConfig
from core.messages import send
from core.params import finetune_params
from core.settings import Settings
from core.weights import WeightsRecord
from db import jobs
from db.models import FINISHED_STATES, Job, Run, Sweep, SweepCell

log = logging.getLogger(__name__)


def after_job(settings: Settings, celery: Celery, sessions, job_id: str, requeued: bool = False) -> None:
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None:  # a message for a job this store never had
            return
        session.expunge(job)
    status, group = job.status, job.group_id
    if requeued and status == "queued":  # resubmitted with new params (e.g. half the batch after OOM)
        send(celery, [job])
    elif status == "succeeded":
        release_dependants(celery, sessions, job_id)
    elif status in ("failed", "cancelled"):
        fail_dependants(sessions, job_id, f"{job.kind} job {job_id} {status}")
    if group and status in FINISHED_STATES:
        start_finetune_followups(settings, celery, sessions, group)


def release_dependants(celery: Celery, sessions, job_id: str) -> int:
    with sessions() as session:
        waiting = session.scalars(select(Job).where(Job.depends_on == job_id, Job.status == "queued")).all()
        session.expunge_all()
    return send(celery, waiting) if waiting else 0


def fail_dependants(sessions, job_id: str, reason: str) -> list[str]:
    """Fail the jobs still queued behind ``job_id``; one that was cancelled meanwhile stays cancelled."""
    with sessions.begin() as session:
        return jobs.fail_waiting(session, job_id, f"needs {reason}")


def start_finetune_followups(settings: Settings, celery: Celery, sessions, sweep_id: str) -> None:
    """When every grid cell has ended, fine-tune the K best end to end (once per sweep)."""
    try:
        created = _create_finetune_jobs(settings, sessions, sweep_id)
    except IntegrityError:  # another worker finished the last cell at the same moment and created them
        return
    if created:
        send(celery, created)
        log.info("sweep %s: fine-tuning the %d best cells", sweep_id, len(created))


def rank_cells(cells: list[tuple[SweepCell, Run]], metric: str) -> list[tuple[SweepCell, Run]]:
    """Best first by the sweep's validation ``metric`` (as grid_leaderboard ranks), ties by cell index;
    cells without a value are left out."""
    column = f"best_val_{metric}"
    done = [(c, r) for c, r in cells if getattr(r, column) is not None]
    return sorted(done, key=lambda cr: (-getattr(cr[1], column), cr[0].cell_index))


def _create_finetune_jobs(settings: Settings, sessions, sweep_id: str) -> list[Job]:
    with sessions.begin() as session:
        sweep = session.get(Sweep, sweep_id)
        if sweep is None or not sweep.finetune_top:
            return []
        created = [
            _finetune_job(session, settings, sweep, cell, run) for cell, run in _best_ended_cells(session, sweep)
        ]
        session.flush()
        session.expunge_all()
    return created


def _best_ended_cells(session, sweep: Sweep) -> list[tuple[SweepCell, Run]]:
    """The sweep's ``finetune_top`` best succeeded cells, once every cell has ended and none was followed up."""
    cells = session.execute(
        select(SweepCell, Job.status, Run)
        .join(Job, SweepCell.job_id == Job.id)
        .join(Run, SweepCell.run_id == Run.id)
        .where(SweepCell.sweep_id == sweep.id)
    ).all()
    if any(c.stage == "finetune" for c, _, _ in cells) or any(s not in FINISHED_STATES for _, s, _ in cells):
        return []
    return rank_cells([(c, r) for c, s, r in cells if s == "succeeded"], sweep.metric)[: sweep.finetune_top]


def _finetune_job(session, settings: Settings, sweep: Sweep, cell: SweepCell, run: Run) -> Job:
    """One follow-up: its train job, its run, and its sweep cell (stage finetune)."""
    cell_params = session.get(Job, run.job_id).params
    # The backbone starts from the weights the cell's features came from (cells older than the record carry none).
    weights = WeightsRecord.from_json(cell_params["weights"]) if "weights" in cell_params else None
    params = finetune_params(
        sweep.spec["dataset"],
        sweep.dataset_id,
        TrainConfig.from_json(run.config),
        cell.cell_index,
        run.checkpoint_path,
        sweep.spec.get("finetune_lr_scale", 0.1),
        weights,
    )
    job = jobs.create_job(session, "train", params, max_attempts=settings.max_attempts)
    job.group_id = sweep.id
    new_run = Run(
        job_id=job.id,
        dataset_id=sweep.dataset_id,
        arch=sweep.arch,
        config=params["config"],
        weights=run.weights,
        weights_sha256=run.weights_sha256,
    )
    session.add(new_run)
    session.flush()
    # The unique (sweep, cell, stage) key makes a second creator fail instead of doubling the jobs.
    session.add(
        SweepCell(
            sweep_id=sweep.id,
            cell_index=cell.cell_index,
            stage="finetune",
            cell=cell.cell,
            job_id=job.id,
            run_id=new_run.id,
        )
    )
    return job
