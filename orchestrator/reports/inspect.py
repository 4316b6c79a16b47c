"""The inspect job behind a report (``core.inspection``): made sure of, and waited for.

A report asks for the same run (and batch) again and again. The job's params are its cache key, so a
succeeded job whose files are still there is reused; one still queued or running (another report asking
at the same moment) is waited for; only otherwise is a new one committed and sent. The worker computes,
this module only reads: it never imports torch.
"""

from __future__ import annotations

import math

from sqlalchemy import func, select

from core import messages
from core.artifacts import artifact_path
from core.errors import ConfigError, one_line
from core.inspection import ACTIVATIONS_FILE, MAP_FILE, inspect_key
from core.params import MAX_INT, inspect_params
from db import jobs
from db.models import FINISHED_STATES, Job, Run, StyleBatch, StyleBatchPair, Stylization
from orchestrator.jobs.progress import watch_jobs
from orchestrator.jobs.submit import reusable_job

KIND = "inspect"


def ensure_inspection(
    lab,
    run_id: int,
    batch_id: str | None,
    *,
    per_artist: int = 3,
    contents: int = 8,
    seed: int = 0,
    perplexity: float = 30.0,
    timeout: float = 1800,
) -> str:
    """The folder (relative to the artifacts root) holding the inspection of ``run_id`` (and of style batch
    ``batch_id``'s stylizations), computed by a worker unless an identical job already did; progress is shown
    on stderr. Raises ConfigError, in one line, for a run or batch that cannot be inspected, or a job that
    failed, was cancelled or had not ended after ``timeout`` seconds (it then goes on running)."""
    check_options(run_id, per_artist, contents, seed, perplexity)
    with lab.sessions() as s:
        check_subject(s, run_id, batch_id)
        works = batch_work_count(s, batch_id)
        key = inspect_key(run_id, batch_id, per_artist, contents, seed, perplexity, works)
        params = inspect_params(key, jobs.params_hash)
        done = reusable_job(s, KIND, params)
        if done is not None and complete(lab, params["output"]):
            return params["output"]
        pending = s.scalars(
            select(Job)
            .where(
                Job.kind == KIND,
                Job.params_hash == jobs.params_hash(KIND, params),
                Job.status.in_(("queued", "running")),
            )
            .order_by(Job.created_at.desc())
            .limit(1)
        ).first()
    if pending is None:
        job_id = submit(lab, params)
    else:
        job_id = pending.id
        if pending.status == "queued":
            # Its message may have been lost (the broker restarted); a second one for the same job claims nothing.
            messages.send(lab.celery(), [pending])
    wait_for(lab, job_id, timeout)
    return params["output"]


def check_options(run_id: int, per_artist: int, contents: int, seed: int, perplexity: float) -> None:
    for name, value, low in (("run id", run_id, 1), ("per_artist", per_artist, 0), ("contents", contents, 0)):
        if not isinstance(value, int) or not low <= value <= MAX_INT:
            raise ConfigError(f"{name} must be an integer from {low} to {MAX_INT}, got {value!r}")
    if not isinstance(seed, int) or not 0 <= seed <= MAX_INT:
        raise ConfigError(f"seed must be an integer from 0 to {MAX_INT}, got {seed!r}")
    if not isinstance(perplexity, (int, float)) or not math.isfinite(perplexity) or perplexity <= 0:
        raise ConfigError(f"perplexity must be a positive number, got {perplexity!r}")


def check_subject(session, run_id: int, batch_id: str | None) -> None:
    """A finished run (its checkpoint final: the job's files are cached by its params, not by its weights),
    and a batch it classified whose jobs have all ended."""
    run = session.get(Run, run_id)
    if run is None:
        raise ConfigError(f"run {run_id} does not exist")
    status = session.scalar(select(Job.status).where(Job.id == run.job_id))
    if not run.checkpoint_path:
        raise ConfigError(f"run {run_id} has no checkpoint: it has not finished an epoch (its job is {status})")
    if status != "succeeded":
        raise ConfigError(
            f"run {run_id} has not finished (its train job is {status}): only a final checkpoint is inspected"
        )
    if batch_id is None:
        return
    batch = session.get(StyleBatch, batch_id)
    if batch is None:
        raise ConfigError(f"style batch {batch_id!r} does not exist")
    if batch.classifier_run_id != run_id:
        raise ConfigError(f"style batch {batch_id} was classified by run {batch.classifier_run_id}, not run {run_id}")
    waiting = session.scalar(
        select(func.count()).select_from(Job).where(Job.group_id == batch_id, Job.status.not_in(FINISHED_STATES))
    )
    if waiting:
        raise ConfigError(
            f"style batch {batch_id} still has {waiting} job(s) queued or running: inspect it once it has ended"
        )


def batch_work_count(session, batch_id: str | None) -> int | None:
    """The stylizations a batch holds (its own and the pairs it reused), as the inspect job reads them."""
    if batch_id is None:
        return None
    return session.scalar(
        select(func.count())
        .select_from(StyleBatchPair)
        .join(Stylization, Stylization.pair_hash == StyleBatchPair.pair_hash)
        .where(StyleBatchPair.batch_id == batch_id)
    )


def complete(lab, output: str) -> bool:
    """Both files of a succeeded job still there (artifacts can be cleaned by hand)."""
    folder = artifact_path(lab.settings.artifacts, output)
    return (folder / MAP_FILE).is_file() and (folder / ACTIVATIONS_FILE).is_file()


def submit(lab, params: dict) -> str:
    """Commit the job's row, then send it; the broker must be reachable before anything is committed."""
    celery = lab.celery()
    with lab.sessions.begin() as s:
        job = jobs.create_job(s, KIND, params, queue="gpu", max_attempts=lab.settings.max_attempts)
    messages.send(celery, [job])
    return job.id


def wait_for(lab, job_id: str, timeout: float) -> None:
    (row,) = watch_jobs(lab, [job_id], timeout=timeout)
    if row.status == "succeeded":
        return
    if row.status in FINISHED_STATES:
        raise ConfigError(f"inspect job {job_id} {row.status}: {one_line(row.error or 'no reason recorded')}")
    raise ConfigError(
        f"inspect job {job_id} has not ended after {timeout:g} s (it is {row.status}); it goes on: "
        f"`atelier status {job_id}`"
    )
