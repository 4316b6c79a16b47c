"""The job table's compare-and-set protocol, on a real SQLite file."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from db import jobs
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import EpochMetric, Job, utcnow
from db.upsert import upsert


@pytest.fixture
def sessions(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def new_job(sessions, max_attempts=3) -> str:
    with sessions.begin() as s:
        return jobs.create_job(s, "train", {"a": 1}, max_attempts=max_attempts).id


def test_only_one_claim_wins(sessions):
    job = new_job(sessions)
    with sessions.begin() as s:
        first = jobs.claim(s, job, "w1", lease_seconds=60)
    with sessions.begin() as s:
        second = jobs.claim(s, job, "w2", lease_seconds=60)
    assert first is not None and first.attempt == 1
    assert second is None


def test_expired_claim_can_be_taken_and_old_owner_is_refused(sessions):
    job = new_job(sessions)
    t0 = utcnow()
    with sessions.begin() as s:
        old = jobs.claim(s, job, "w1", lease_seconds=5, now=t0)
    with sessions.begin() as s:
        new = jobs.claim(s, job, "w2", lease_seconds=5, now=t0 + timedelta(seconds=10))
    assert new is not None and new.attempt == 2
    with sessions.begin() as s:
        assert not jobs.touch(s, old)
        assert not jobs.finish(s, old, "succeeded")
        assert jobs.finish(s, new, "succeeded")
    with sessions() as s:
        row = s.get(Job, job)
        assert (row.status, row.worker, row.progress) == ("succeeded", "w2", 1.0)


def test_expire_leases_requeues_then_fails_with_reason(sessions):
    job = new_job(sessions, max_attempts=2)
    t = utcnow()
    for attempt in (1, 2):
        with sessions.begin() as s:
            assert jobs.claim(s, job, f"w{attempt}", lease_seconds=5, now=t) is not None
        t += timedelta(seconds=30)
        with sessions.begin() as s:
            requeued = jobs.expire_leases(s, lease_seconds=5, now=t)
        with sessions() as s:
            row = s.get(Job, job)
        if attempt == 1:
            assert [j.id for j in requeued] == [job] and row.status == "queued"
        else:
            assert requeued == [] and row.status == "failed"
        assert f"worker w{attempt} lost" in row.error and "no heartbeat for 30s" in row.error


def test_fresh_heartbeat_is_not_expired(sessions):
    job = new_job(sessions)
    with sessions.begin() as s:
        jobs.claim(s, job, "w1", lease_seconds=60)
    with sessions.begin() as s:
        assert jobs.expire_leases(s, lease_seconds=60) == []


def test_params_hash_ignores_key_order():
    assert jobs.params_hash("train", {"a": 1, "b": [1, 2]}) == jobs.params_hash("train", {"b": [1, 2], "a": 1})
    assert jobs.params_hash("train", {"a": 1}) != jobs.params_hash("grid", {"a": 1})


def test_upsert_replaces_instead_of_duplicating(sessions):
    from db.models import Dataset, Run

    job = new_job(sessions)
    with sessions.begin() as s:
        ds = Dataset(name="d", root="/x", format="imagefolder", seed=0, split=[0.7, 0.15, 0.15], classes=["a", "b"])
        s.add(ds)
        s.flush()
        run = Run(job_id=job, dataset_id=ds.id, arch="resnet18", config={})
        s.add(run)
        s.flush()
        run_id = run.id
    row = dict(run_id=run_id, epoch=1, phase="val", loss=1.0, top1=0.5, top2=0.7, macro_f1=0.4, lr=1e-3)
    for loss in (1.0, 0.5):
        with sessions.begin() as s:
            upsert(s, EpochMetric, [{**row, "loss": loss}], keys=("run_id", "epoch", "phase"))
    with sessions() as s:
        assert s.scalars(select(EpochMetric.loss)).all() == [0.5]


def test_a_dependant_cannot_be_claimed_before_its_dependency_succeeded(sessions):
    features = new_job(sessions)
    with sessions.begin() as s:
        cell = jobs.create_job(s, "train", {"cell": 0})
        cell.depends_on = features
        cell_id = cell.id
    with sessions.begin() as s:
        assert jobs.claim(s, cell_id, "w1", lease_seconds=60) is None
        c = jobs.claim(s, features, "w1", lease_seconds=60)
        assert jobs.finish(s, c, "succeeded")
    with sessions.begin() as s:
        assert jobs.claim(s, cell_id, "w1", lease_seconds=60) is not None


def job_in(sessions, status: str) -> tuple[str, jobs.Claim | None]:
    """A job brought to ``status`` the way workers do it; its claim when one was taken."""
    job = new_job(sessions)
    if status == "queued":
        return job, None
    with sessions.begin() as s:
        claim = jobs.claim(s, job, "w1", lease_seconds=60)
        if status == "cancelled":
            assert jobs.cancel(s, [job]) == [job]
        elif status != "running":
            assert jobs.finish(s, claim, status, "boom" if status == "failed" else None)
    return job, claim


def row(sessions, job_id: str) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def test_cancel_moves_only_queued_and_running_jobs(sessions):
    made = {status: job_in(sessions, status) for status in ("queued", "running", "succeeded", "failed")}
    with sessions.begin() as s:
        changed = jobs.cancel(s, [job for job, _ in made.values()])
    assert sorted(changed) == sorted([made["queued"][0], made["running"][0]])
    for status in ("queued", "running"):
        r = row(sessions, made[status][0])
        assert (r.status, r.error) == ("cancelled", "cancelled by user") and r.finished_at is not None
    assert row(sessions, made["succeeded"][0]).error is None
    assert (row(sessions, made["failed"][0]).status, row(sessions, made["failed"][0]).error) == ("failed", "boom")


def test_a_cancel_after_finish_changes_nothing_and_a_finish_after_cancel_is_refused(sessions):
    done, _ = job_in(sessions, "succeeded")
    running, claim = job_in(sessions, "running")
    with sessions.begin() as s:
        assert jobs.cancel(s, [done]) == []
        assert jobs.cancel(s, [running]) == [running]
        assert not jobs.finish(s, claim, "succeeded")
        assert jobs.cancel(s, [running]) == []  # already cancelled: nothing moves twice
    assert row(sessions, done).status == "succeeded" and row(sessions, done).progress == 1.0
    assert row(sessions, running).status == "cancelled"


def test_retry_requeues_only_failed_and_cancelled_jobs_with_fresh_attempts(sessions):
    made = {status: job_in(sessions, status) for status in ("failed", "cancelled", "succeeded", "running", "queued")}
    with sessions.begin() as s:
        loaded = s.get(Job, made["failed"][0])  # a row the caller already holds follows the update
        changed = jobs.retry(s, [job for job, _ in made.values()])
        assert (loaded.status, loaded.attempts) == ("queued", 0)
    assert sorted(changed) == sorted([made["failed"][0], made["cancelled"][0]])
    for status in ("failed", "cancelled"):
        r = row(sessions, made[status][0])
        assert (r.status, r.attempts, r.error, r.finished_at, r.lease_token) == ("queued", 0, None, None, None)
    running = row(sessions, made["running"][0])
    assert (running.status, running.lease_token) == ("running", made["running"][1].token)
    assert row(sessions, made["succeeded"][0]).status == "succeeded"
    with sessions.begin() as s:
        assert jobs.retry(s, changed) == []  # queued now: a second retry moves nothing


def test_cancel_and_retry_handle_more_ids_than_one_in_list(sessions):
    with sessions.begin() as s:
        many = [jobs.create_job(s, "train", {"i": i}).id for i in range(1200)]
    with sessions.begin() as s:
        assert sorted(jobs.cancel(s, many)) == sorted(many)
    with sessions.begin() as s:
        assert sorted(jobs.retry(s, many)) == sorted(many)


def test_fail_waiting_fails_only_queued_dependants(sessions):
    features, other = new_job(sessions), new_job(sessions)
    with sessions.begin() as s:
        waiting, cancelled, elsewhere = (jobs.create_job(s, "train", {"cell": i}) for i in range(3))
        waiting.depends_on = cancelled.depends_on = features
        elsewhere.depends_on = other
        ids = waiting.id, cancelled.id, elsewhere.id
    with sessions.begin() as s:
        jobs.cancel(s, [ids[1]])
    with sessions.begin() as s:
        assert jobs.fail_waiting(s, features, "needs features job failed") == [ids[0]]
        assert jobs.fail_waiting(s, features, "again") == []
    r = row(sessions, ids[0])
    assert (r.status, r.error) == ("failed", "needs features job failed") and r.finished_at is not None
    assert row(sessions, ids[1]).status == "cancelled" and row(sessions, ids[2]).status == "queued"


def test_expire_leases_leaves_cancelled_and_reclaimed_jobs_alone(sessions):
    t = utcnow()
    cancelled, reclaimed, lost = new_job(sessions), new_job(sessions), new_job(sessions)
    with sessions.begin() as s:
        for job in (cancelled, reclaimed, lost):
            jobs.claim(s, job, "w1", lease_seconds=5, now=t)
        jobs.cancel(s, [cancelled])
        # Another worker took over the silent job just before the reaper came: its lease is fresh.
        assert jobs.claim(s, reclaimed, "w2", lease_seconds=5, now=t + timedelta(seconds=30)) is not None
    with sessions.begin() as s:
        held = s.get(Job, lost)  # already in the session, stale: the returned row must be current
        requeued = jobs.expire_leases(s, lease_seconds=5, now=t + timedelta(seconds=31))
        assert requeued == [held] and (held.status, held.lease_token) == ("queued", None)
    assert row(sessions, cancelled).status == "cancelled" and row(sessions, cancelled).error == "cancelled by user"
    assert (row(sessions, reclaimed).status, row(sessions, reclaimed).worker) == ("running", "w2")
    with sessions.begin() as s:
        assert jobs.expire_leases(s, lease_seconds=5, now=t + timedelta(seconds=31)) == []  # nothing expires twice
