"""``reaper.reap_once``: jobs whose worker stopped heartbeating go back to the queue (and their messages out
again) or, on their last attempt, fail. On a SQLite file store with an in-memory broker."""

from __future__ import annotations

from datetime import timedelta

from core.messages import task_labels
from db.models import Job, utcnow
from tests.unit.worker.fakes import Message, add_job, make_settings, memory_celery, published, sqlite_store
from worker.reaper import reap_once


def test_silent_jobs_are_requeued_and_resent_or_failed_on_their_last_attempt(tmp_path):
    settings = make_settings(tmp_path, lease_seconds=30)
    celery = memory_celery(settings)
    with sqlite_store(settings) as sessions:
        now = utcnow()
        with sessions.begin() as s:
            silent = dict(heartbeat_at=now - timedelta(seconds=90), lease_token="t", worker="w1")  # lease: 30 s
            retry = add_job(s, "running", attempts=1, max_attempts=3, **silent)
            last = add_job(s, "running", attempts=3, max_attempts=3, **silent)
            alive = add_job(s, "running", heartbeat_at=now, lease_token="t2", worker="w2", attempts=1)
            queued = add_job(s)

        assert reap_once(settings, celery, sessions) == 1
        assert published(celery) == [Message("atelier.train", f"{retry.id}.1", [retry.id], task_labels(retry), "gpu")]
        with sessions() as s:
            requeued, failed = s.get(Job, retry.id), s.get(Job, last.id)
            assert (requeued.status, requeued.lease_token, requeued.finished_at) == ("queued", None, None)
            assert "worker w1 lost: no heartbeat for" in requeued.error and "(attempt 1 of 3)" in requeued.error
            assert (failed.status, failed.lease_token) == ("failed", None) and failed.finished_at is not None
            assert "attempt 3 of 3" in failed.error
            assert (s.get(Job, alive.id).status, s.get(Job, alive.id).lease_token) == ("running", "t2")
            assert s.get(Job, queued.id).status == "queued"

        assert reap_once(settings, celery, sessions) == 0  # nothing is silent any more
        assert published(celery) == []
    celery.close()
