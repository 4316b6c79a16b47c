"""Recovering jobs whose worker died: a small process beside each worker.

With early acks the broker forgets a message once a worker took it, so a
SIGKILLed worker's job survives only as a `running` row whose heartbeat stops.
Every live worker periodically requeues such rows (or fails them after the last
attempt) and re-sends their messages.

It is a *spawned* process, not a thread of the worker's parent: the parent
forks a child per task, and an SQLite connection open in the parent at fork
time leaves SQLite's per-process lock table wrong in the child ("database is
locked" forever). So the worker parent holds no database connection at all.
"""

from __future__ import annotations

import logging
import multiprocessing
import time

from celery import Celery

from core.messages import send
from core.settings import Settings
from db import jobs
from db.engine import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


def reap_once(settings: Settings, celery: Celery, sessions) -> int:
    with sessions.begin() as session:
        requeued = jobs.expire_leases(session, settings.lease_seconds)
        session.expunge_all()
    if requeued:
        send(celery, requeued)
        log.warning("requeued %d job(s) whose worker stopped heartbeating", len(requeued))
    return len(requeued)


def run_forever(settings: Settings) -> None:
    from core.messages import configure

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    celery = configure(settings)
    sessions = make_sessionmaker(make_engine(settings.database_url))
    while True:
        time.sleep(settings.lease_seconds / 2)
        try:
            reap_once(settings, celery, sessions)
        except Exception:  # the store or broker is down for a moment: try again later
            log.exception("reaper pass failed")


def start_reaper(settings: Settings) -> multiprocessing.process.BaseProcess:
    proc = multiprocessing.get_context("spawn").Process(
        target=run_forever, args=(settings,), name="atelier-reaper", daemon=True
    )
    proc.start()
    return proc
