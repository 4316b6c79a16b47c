"""What happens when a job ends, beyond its own row: jobs waiting for it, and sweep follow-ups.

Runs in the worker right after a job finished (succeeded or not), in its own
transactions, so a crash here loses nothing that `atelier resume` cannot redo.
"""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import jobs
from db.models import FINISHED_STATES, Job, Run, Sweep, SweepCell, utcnow
from core.messages import send
from core.settings import Settings

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


def fail_dependants(sessions, job_id: str, reason: str) -> None:
    with sessions.begin() as session:
        for job in session.scalars(select(Job).where(Job.depends_on == job_id, Job.status == "queued")):
            job.status, job.error, job.finished_at = "failed", f"needs {reason}", utcnow()


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
        cells = session.execute(
            select(SweepCell, Job.status, Run).join(Job, SweepCell.job_id == Job.id).join(Run, SweepCell.run_id == Run.id)
            .where(SweepCell.sweep_id == sweep_id)
        ).all()
        if any(c.stage == "finetune" for c, _, _ in cells) or any(s not in FINISHED_STATES for _, s, _ in cells):
            return []
        best = rank_cells([(c, r) for c, s, r in cells if s == "succeeded"], sweep.metric)[: sweep.finetune_top]
        created = []
        for cell, run in best:
            # End to end on images: augmented on the fly, so no stored feature views (views 1).
            config = {**run.config, "mode": "fine-tune", "lr": run.config["lr"] * sweep.spec.get("finetune_lr_scale", 0.1),
                      "views": 1, "features_seed": 0}
            params = {"dataset": sweep.spec["dataset"], "dataset_id": sweep.dataset_id, "arch": sweep.arch,
                      "config": config, "init_head": run.checkpoint_path, "cell": cell.cell_index}
            cell_params = session.get(Job, run.job_id).params
            if "weights" in cell_params:  # the backbone starts from the weights the cell's features came from
                params["weights"] = cell_params["weights"]
            job = jobs.create_job(session, "train", params, max_attempts=settings.max_attempts)
            job.group_id = sweep_id
            new_run = Run(job_id=job.id, dataset_id=sweep.dataset_id, arch=sweep.arch, config=config,
                          weights=run.weights, weights_sha256=run.weights_sha256)
            session.add(new_run)
            session.flush()
            job.params = {**params, "run_id": new_run.id}
            # The unique (sweep, cell, stage) key makes a second creator fail instead of doubling the jobs.
            session.add(SweepCell(sweep_id=sweep_id, cell_index=cell.cell_index, stage="finetune", cell=cell.cell,
                                  job_id=job.id, run_id=new_run.id))
            created.append(job)
        session.flush()
        session.expunge_all()
    return created
