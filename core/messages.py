"""The message contract between the CLI and the workers.

A message carries a job id and nothing the worker trusts: the committed job row is
the truth (docs/architecture.md, rule 1). Everything both sides must agree on lives here: the task
names, the queues, the Celery configuration (JSON only, early ack, no prefetch, task
events for Flower) and ``send``, which publishes after the rows are committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Protocol

from celery import Celery
from kombu import Exchange, Queue
from kombu.utils.url import parse_url

from core.errors import ConfigError
from core.settings import Settings

TASK_NAMES = {
    "train": "atelier.train",
    "features": "atelier.features",
    "stylize": "atelier.stylize",
    "inspect": "atelier.inspect",  # the feature pass behind a report (core.inspection)
    "attribute": "atelier.attribute",  # another attributor on a stored batch's pictures (core.attributors)
}
QUEUES = ("gpu", "cpu")


class JobRow(Protocol):
    """What ``send`` reads from a job (``db.models.Job`` has it; core imports no ORM)."""

    id: str
    kind: str
    queue: str
    attempts: int
    params: dict


def parse_queues(queues: str) -> list[str]:
    """``--queues gpu,cpu`` as a list, refused in one line if it names no queue or an unknown one."""
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in QUEUES]
    if not wanted or unknown:
        raise ConfigError(f"unknown queue(s) {', '.join(unknown) or queues!r}; choose from {', '.join(QUEUES)}")
    return wanted


def configure(settings: Settings, celery: Celery | None = None) -> Celery:
    """Configure ``celery`` (a fresh app when None: a client that only sends by task name).

    Settings follow docs/architecture.md, rule 3, and Celery's Redis caveats: early ack with prefetch
    disabled and one process per GPU, so a long task is never redelivered while it runs
    (recovery comes from the job table's leases, not from the broker).
    """
    celery = celery or Celery("atelier")
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_use_ssl=broker_ssl(settings.broker_url),
        broker_connection_retry_on_startup=True,
        # Every consumer must agree on this value (celery/celery#5935).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        # Results live in SQL; the broker only carries job ids.
        task_ignore_result=True,
        result_backend=None,
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES],
        task_default_queue="gpu",
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        worker_concurrency=1,
        # One long-lived child per worker (docs/architecture.md, rule 3): CUDA, the engine and the caches of
        # worker.child outlive a job. The child is replaced after a job once its RSS passes this limit (KiB),
        # or when the job asked for a fresh one (CUDA OOM, an unexpected error: see worker.child).
        worker_max_tasks_per_child=None,
        worker_max_memory_per_child=settings.worker_max_rss_mb * 1024,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return celery


def broker_ssl(url: str) -> dict | None:
    """The TLS options in a rediss:// URL's query (ssl_cert_reqs, ssl_ca_certs...), or None.

    kombu already reads them from the URL, but Flower's broker client does not: it takes
    only ``broker_use_ssl`` (and would otherwise verify against the system CAs).
    """
    return parse_url(url).get("ssl") or None


def task_labels(job: JobRow) -> dict:
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


def send(celery: Celery, jobs: Iterable[JobRow], again: bool = False) -> int:
    """Publish one message per job over a single producer connection (after its row is committed).

    ``again``: jobs sent once more after a retry get a fresh task id. A job cancelled while queued had its message's
    id revoked, and a worker drops a revoked id for as long as it lives, so the same id would never run again. Two
    messages for one job still run it once: a worker claims the row with a compare-and-set."""
    sent = 0
    with celery.producer_or_acquire() as producer:
        for job in jobs:
            celery.send_task(
                TASK_NAMES[job.kind],
                args=[job.id],
                kwargs=task_labels(job),
                queue=job.queue,
                task_id=f"{job.id}.{job.attempts}" + (f".{uuid.uuid4().hex[:8]}" if again else ""),
                producer=producer,
                ignore_result=True,
            )
            sent += 1
    return sent
