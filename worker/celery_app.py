"""The Celery application and its configuration.

Settings follow DESIGN rule 3 and the Redis caveats: JSON only; early ack with
prefetch disabled and one process per GPU, so a long task is never redelivered
while it runs (recovery comes from the job table's leases, not from the broker);
a fresh child per task so GPU memory is fully returned; task events on for Flower.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue
from kombu.utils.url import parse_url

from orchestrator.settings import Settings

QUEUES = ("gpu", "cpu")

app = Celery("atelier", include=["worker.tasks"])


def configure(settings: Settings, celery: Celery | None = None) -> Celery:
    """Configure ``celery`` (a fresh app when None: a client that only sends by task name)."""
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
        worker_max_tasks_per_child=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    celery.atelier_settings = settings  # read by tasks: the one settings object, passed down
    return celery


def broker_ssl(url: str) -> dict | None:
    """The TLS options in a rediss:// URL's query (ssl_cert_reqs, ssl_ca_certs...), or None.

    kombu already reads them from the URL, but Flower's broker client does not: it takes
    only ``broker_use_ssl`` (and would otherwise verify against the system CAs).
    """
    return parse_url(url).get("ssl") or None
