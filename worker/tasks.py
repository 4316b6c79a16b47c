"""Thin Celery tasks: take a job id, hand it to the lifecycle, nothing more.

Extra keyword arguments (kind, dataset, arch, cell...) are there only so Flower
shows readable task arguments; the job row is what the worker trusts.
"""

from __future__ import annotations

from db.engine import make_engine, make_sessionmaker
from worker.celery_app import app
from worker.features_job import run_features
from worker.followups import after_job
from worker.lifecycle import execute
from worker.stylize_job import run_stylize
from worker.train_job import run_train


def _run(task, job_id: str, runner) -> str:
    settings = task.app.atelier_settings

    def report(fraction: float, message: str) -> None:
        # A custom task event: Flower shows the task in state PROGRESS with these fields.
        task.send_event("task-progress", progress=round(fraction, 4), message=message)

    try:
        return execute(settings, job_id, runner, worker=task.request.hostname, report=report)
    finally:
        engine = make_engine(settings.database_url)
        try:
            after_job(settings, task.app, make_sessionmaker(engine), job_id)
        finally:
            engine.dispose()


@app.task(name="atelier.train", bind=True)
def train(self, job_id: str, **labels) -> str:
    return _run(self, job_id, run_train)


@app.task(name="atelier.features", bind=True)
def features(self, job_id: str, **labels) -> str:
    return _run(self, job_id, run_features)


@app.task(name="atelier.stylize", bind=True)
def stylize(self, job_id: str, **labels) -> str:
    return _run(self, job_id, run_stylize)
