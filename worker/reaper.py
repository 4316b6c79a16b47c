"""Recovering jobs whose worker died: runs as a thread in each worker's parent.

With early acks the broker forgets a message once a worker took it, so a
SIGKILLed worker's job survives only as a `running` row whose heartbeat stops.
Every live worker periodically requeues such rows (or fails them after the last
attempt) and re-sends their messages.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery

from db import jobs
from db.engine import make_engine, make_sessionmaker
from orchestrator.enqueue import send
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


def reap_once(settings: Settings, celery: Celery, sessions) -> int:
    with sessions.begin() as session:
        requeued = jobs.expire_leases(session, settings.lease_seconds)
        session.expunge_all()
    if requeued:
        send(celery, requeued)
        log.warning("requeued %d job(s) whose worker stopped heartbeating", len(requeued))
    return len(requeued)


def start_reaper(settings: Settings, celery: Celery) -> threading.Event:
    stop = threading.Event()
    sessions = make_sessionmaker(make_engine(settings.database_url))

    def loop() -> None:
        while not stop.wait(settings.lease_seconds / 2):
            try:
                reap_once(settings, celery, sessions)
            except Exception:  # the store or broker is down for a moment: try again later
                log.exception("reaper pass failed")

    threading.Thread(target=loop, name="atelier-reaper", daemon=True).start()
    return stop
