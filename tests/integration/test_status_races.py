"""Status changes that race on PostgreSQL: each is one compare-and-set UPDATE, so exactly one side wins.

Under READ COMMITTED the second UPDATE waits for the first one's row lock, then re-checks
its WHERE on the committed row: a cancel that lands second sees `succeeded` and moves
nothing, a finish that lands second sees `cancelled` and is refused.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest

from db import jobs
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import Job, utcnow
from orchestrator.jobs import control
from tests.conftest import unique

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROUNDS = 50


@pytest.fixture(scope="module")
def sessions(pg_server):
    engine = make_engine(pg_server.create_database(unique("races")))
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def no_broker():
    raise AssertionError("a running job has no queued message to revoke")


def claimed(sessions, heartbeat_at=None) -> jobs.Claim:
    with sessions.begin() as s:
        job_id = jobs.create_job(s, "train", {"race": unique("r")}).id
    with sessions.begin() as s:
        return jobs.claim(s, job_id, "w1", lease_seconds=60, now=heartbeat_at)


def race(*calls):
    """Run ``calls`` in threads released together; their results in order."""
    barrier, results, errors = threading.Barrier(len(calls)), [None] * len(calls), []

    def run(i, call):
        try:
            barrier.wait(10)
            results[i] = call()
        except BaseException as err:  # re-raised below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def in_transaction(sessions, fn):
    def call():
        with sessions.begin() as s:
            s.connection()  # connected and in a transaction before the barrier opens
            return fn(s)

    return call


def status_of(sessions, job_id: str) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


@pytest.mark.parametrize("path", ["db", "cli"])
def test_cancel_racing_finish_has_exactly_one_winner(sessions, path):
    lab = SimpleNamespace(sessions=sessions, celery=no_broker)
    wins = {"finish": 0, "cancel": 0}
    for _ in range(ROUNDS):
        claim = claimed(sessions)
        if path == "db":
            cancel = in_transaction(sessions, lambda s, c=claim: jobs.cancel(s, [c.job_id]))
        else:  # what `atelier cancel` runs
            cancel = lambda c=claim: control.cancel(lab, c.job_id).changed  # noqa: E731
        finished, cancelled = race(in_transaction(sessions, lambda s, c=claim: jobs.finish(s, c, "succeeded")), cancel)
        row = status_of(sessions, claim.job_id)
        assert finished != (cancelled == [claim.job_id]), (finished, cancelled, row.status)
        assert row.status == ("succeeded" if finished else "cancelled"), (finished, cancelled, row.status)
        assert row.error == (None if finished else "cancelled by user")
        wins["finish" if finished else "cancel"] += 1
    print(f"{path}: {wins}")  # both sides should win some rounds, or the race was never close


def test_a_finish_between_the_cancel_commands_read_and_its_update_wins(sessions, monkeypatch):
    # The interleaving that overwrote `succeeded` when cancel set fields on the rows it had read.
    claim = claimed(sessions)
    real_jobs_of = control.jobs_of

    def jobs_of_then_the_worker_finishes(session, ref):
        name, found = real_jobs_of(session, ref)
        assert [j.status for j in found] == ["running"]
        with sessions.begin() as other:
            assert jobs.finish(other, claim, "succeeded")
        return name, found

    monkeypatch.setattr(control, "jobs_of", jobs_of_then_the_worker_finishes)
    done = control.cancel(SimpleNamespace(sessions=sessions, celery=no_broker), claim.job_id)
    assert (done.found, done.changed, done.note) == (1, [], None)
    row = status_of(sessions, claim.job_id)
    assert (row.status, row.error, row.progress) == ("succeeded", None, 1.0)


def test_reaper_racing_finish_has_exactly_one_winner(sessions):
    for _ in range(ROUNDS):
        claim = claimed(sessions, heartbeat_at=utcnow() - timedelta(seconds=600))  # silent: the reaper may take it
        finished, requeued = race(
            in_transaction(sessions, lambda s, c=claim: jobs.finish(s, c, "succeeded")),
            in_transaction(sessions, lambda s: [j.id for j in jobs.expire_leases(s, lease_seconds=60)]),
        )
        row = status_of(sessions, claim.job_id)
        assert finished != (requeued == [claim.job_id]), (finished, requeued, row.status)
        assert row.status == ("succeeded" if finished else "queued")
