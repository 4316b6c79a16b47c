"""Thin Celery tasks: take a job id, hand it to the lifecycle, nothing more.

Extra keyword arguments (kind, dataset, arch...) are there only so Flower shows
readable task arguments; the job row is what the worker trusts.
"""

from __future__ import annotations

from worker.celery_app import app
from worker.lifecycle import execute
from worker.train_job import run_train

RUNNERS = {"train": run_train}


@app.task(name="atelier.train", bind=True)
def train(self, job_id: str, **labels) -> str:
    return execute(self.app.atelier_settings, job_id, RUNNERS["train"], worker=self.request.hostname)
