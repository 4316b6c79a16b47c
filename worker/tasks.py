"""Thin Celery tasks: take a job id, hand it to the lifecycle, nothing more.

Extra keyword arguments (kind, dataset, arch, cell...) are there only so Flower
shows readable task arguments; the job row is what the worker trusts. Tasks run in
the worker's long-lived child (worker.child): one engine and a cache for every job.
"""

from __future__ import annotations

import logging

from celery.signals import worker_process_init

from worker import child
from worker.attribute_job import run_attribute
from worker.celery_app import app
from worker.features_job import run_features
from worker.followups import after_job
from worker.inspect_job import run_inspect
from worker.lifecycle import Resubmit, execute
from worker.oom import simulated_oom
from worker.stylize_job import run_stylize
from worker.train_job import run_train

log = logging.getLogger(__name__)


@worker_process_init.connect(weak=False)
def _start_child(**_kwargs) -> None:
    if app.settings is not None:
        child.start(app.settings)


def _run(task, kind: str, job_id, runner) -> str:
    settings = task.app.settings
    if not isinstance(job_id, str) or not 0 < len(job_id) <= 64:
        # Only our CLI sends these messages; anything else is logged and dropped, the worker goes on.
        log.error("refused %s message: the job id must be a short string, got %.80r", kind, job_id)
        return "refused"

    def report(fraction: float, message: str) -> None:
        # A custom task event: Flower turns its type into the task's state, PROGRESS. Flower shows
        # only Celery's own task fields, though, so the progress also goes into `result`, empty
        # while a task runs (its real result replaces it at the end); event consumers get the fields.
        task.send_event(
            "task-progress", progress=round(fraction, 4), message=message, result=f"{fraction:.0%} {message}"
        )

    def replaced_after_oom(ctx) -> None:
        try:
            runner(ctx)
        except Resubmit:  # raised only after a CUDA OOM: whether or not the requeue is accepted, go fresh
            child.request_fresh_child(f"job {job_id} ran out of memory")
            raise

    sessions = child.sessions(settings)
    outcome = "raised"
    try:
        with simulated_oom(settings.fault_oom_above_batch):
            outcome = execute(
                settings, job_id, kind, replaced_after_oom, worker=task.request.hostname, report=report,
                sessions=sessions,
            )  # fmt: skip
        return outcome
    finally:
        if outcome == "raised":
            # An unexpected error may leave memory or CUDA state poisoned: the next job gets a fresh child.
            child.request_fresh_child(f"job {job_id} raised")
        try:
            after_job(settings, task.app, sessions, job_id, requeued=outcome == "requeued")
        finally:
            child.after_job()


@app.task(name="atelier.train", bind=True)
def train(self, job_id: str, **labels) -> str:
    return _run(self, "train", job_id, run_train)


@app.task(name="atelier.features", bind=True)
def features(self, job_id: str, **labels) -> str:
    return _run(self, "features", job_id, run_features)


@app.task(name="atelier.stylize", bind=True)
def stylize(self, job_id: str, **labels) -> str:
    return _run(self, "stylize", job_id, run_stylize)


@app.task(name="atelier.inspect", bind=True)
def inspect(self, job_id: str, **labels) -> str:
    return _run(self, "inspect", job_id, run_inspect)


@app.task(name="atelier.attribute", bind=True)
def attribute(self, job_id: str, **labels) -> str:
    return _run(self, "attribute", job_id, run_attribute)
