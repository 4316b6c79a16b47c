"""Sending job messages, always after the rows they name are committed."""

from __future__ import annotations

from typing import Iterable

from celery import Celery

from db.models import Job

TASK_NAMES = {"train": "atelier.train", "features": "atelier.features", "stylize": "atelier.stylize"}


def task_labels(job: Job) -> dict:
    """Readable keyword arguments for Flower; workers trust only the job row."""
    p = job.params
    labels = {"kind": job.kind}
    for key in ("dataset", "arch", "cell", "chunk"):
        if key in p:
            labels[key] = p[key]
    if "dataset" not in labels and "dataset_id" in p:
        # A features job names its dataset by id only: its params are its cache key, so no name goes in.
        labels["dataset"] = p["dataset_id"]
    return labels


def send(celery: Celery, jobs: Iterable[Job]) -> int:
    """Publish one message per job over a single producer connection."""
    sent = 0
    with celery.producer_or_acquire() as producer:
        for job in jobs:
            celery.send_task(
                TASK_NAMES[job.kind], args=[job.id], kwargs=task_labels(job), queue=job.queue,
                task_id=f"{job.id}.{job.attempts}", producer=producer, ignore_result=True,
            )
            sent += 1
    return sent
