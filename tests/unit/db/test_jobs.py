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
