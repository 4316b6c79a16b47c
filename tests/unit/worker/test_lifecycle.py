"""``lifecycle.execute``: claim, run, record how it ended; with fake runners on a SQLite file store."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from core.errors import ConfigError
from db import jobs
from db.models import Job, utcnow
from tests.unit.worker.fakes import add_job, make_settings, sqlite_store, tiny_config
from worker.lifecycle import JobStopped, Resubmit, execute


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def sessions(settings):
    with sqlite_store(settings) as sessions:
        yield sessions


def new_job(sessions, status: str = "queued", **fields) -> str:
    with sessions.begin() as s:
        return add_job(s, status, **fields).id


def row(sessions, job_id: str) -> Job:
    with sessions() as s:
        return s.get(Job, job_id)


def take_over(sessions, job_id: str, worker: str = "w2") -> None:
    """Another worker claims the job, as it may once the lease looks expired to it."""
    with sessions.begin() as s:
        assert jobs.claim(s, job_id, worker, lease_seconds=60, now=utcnow() + timedelta(hours=1)) is not None


def test_a_claimed_job_runs_and_succeeds(settings, sessions):
    job_id = new_job(sessions)
    seen = []

    def runner(ctx):
        seen.append((ctx.job_id, ctx.kind, ctx.params, ctx.claim.attempt, ctx.artifacts))
        assert row(sessions, job_id).status == "running"  # claimed before the runner starts

    assert execute(settings, job_id, "train", runner, worker="w1") == "succeeded"
    assert seen == [(job_id, "train", {"dataset_id": 1, "config": tiny_config().to_json()}, 1, settings.artifacts)]
    job = row(sessions, job_id)
    assert (job.status, job.worker, job.attempts, job.progress, job.error) == ("succeeded", "w1", 1, 1.0, None)
    assert job.finished_at is not None


def test_progress_reaches_the_row_and_the_report_and_a_broken_report_stops_nothing(settings, sessions):
    job_id = new_job(sessions)
    reported, in_row = [], []

    def report(fraction, message):
        reported.append((fraction, message))
        raise RuntimeError("monitoring is down")

    def runner(ctx):
        ctx.progress(0.25, "a quarter")
        job = row(sessions, job_id)
        in_row.append((job.progress, job.message))

    assert execute(settings, job_id, "train", runner, report=report) == "succeeded"
    assert reported == [(0.25, "a quarter")] and in_row == [(0.25, "a quarter")]


def test_a_config_error_fails_the_job_in_one_line_without_raising(settings, sessions):
    job_id = new_job(sessions)

    def runner(ctx):
        raise ConfigError("dataset 7 does not exist\nin the store")

    assert execute(settings, job_id, "train", runner) == "failed"
    job = row(sessions, job_id)
    assert job.status == "failed" and job.error == "dataset 7 does not exist\\nin the store"


def test_an_unexpected_error_is_recorded_then_raised(settings, sessions):
    job_id = new_job(sessions)

    def runner(ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        execute(settings, job_id, "train", runner)
    job = row(sessions, job_id)
    assert (job.status, job.error) == ("failed", "RuntimeError: boom")


def test_bad_params_fail_before_the_runner_runs(settings, sessions):
    job_id = new_job(sessions, params={"dataset_id": 1})  # no config
    ran = []
    assert execute(settings, job_id, "train", ran.append) == "failed"
    assert ran == []
    assert row(sessions, job_id).error.startswith("bad train job params")


def test_resubmit_requeues_with_new_params_without_spending_an_attempt(settings, sessions):
    job_id = new_job(sessions, max_attempts=1)
    smaller = {"dataset_id": 1, "config": tiny_config(batch_size=4).to_json()}

    def runner(ctx):
        raise Resubmit(smaller, "out of memory at batch size 8: retrying with 4")

    assert execute(settings, job_id, "train", runner) == "requeued"
    job = row(sessions, job_id)
    assert (job.status, job.params, job.lease_token) == ("queued", smaller, None)
    assert job.message == "out of memory at batch size 8: retrying with 4"
    assert (job.attempts, job.max_attempts) == (1, 2)
    # One attempt was allowed and one was used, yet the job runs again, with its new params.
    seen = []
    assert execute(settings, job_id, "train", lambda ctx: seen.append((ctx.claim.attempt, ctx.params))) == "succeeded"
    assert seen == [(2, smaller)]


def test_a_lost_claim_stops_the_job_and_writes_nothing(settings, sessions):
    job_id = new_job(sessions)

    def runner(ctx):
        take_over(sessions, job_id)
        ctx.progress(0.5, "still here?")  # raises JobStopped: the row is another worker's now
        raise AssertionError("not reached")

    assert execute(settings, job_id, "train", runner, worker="w1") == "lost"
    job = row(sessions, job_id)
    assert (job.status, job.worker, job.error, job.progress) == ("running", "w2", None, 0.0)


def test_a_resubmit_after_losing_the_claim_is_refused(settings, sessions):
    job_id = new_job(sessions)
    params = row(sessions, job_id).params

    def runner(ctx):
        take_over(sessions, job_id)
        raise Resubmit({"dataset_id": 1, "config": tiny_config(batch_size=1).to_json()}, "smaller")

    assert execute(settings, job_id, "train", runner) == "lost"
    job = row(sessions, job_id)
    assert (job.status, job.worker, job.params) == ("running", "w2", params)


def test_a_cancelled_job_stops_at_its_next_write_and_stays_cancelled(settings, sessions):
    job_id = new_job(sessions)

    def runner(ctx):
        with sessions.begin() as s:  # `atelier cancel`
            s.get(Job, job_id).status = "cancelled"
        with ctx.write():
            raise AssertionError("a cancelled job's transaction must not open")

    assert execute(settings, job_id, "train", runner) == "cancelled"
    assert row(sessions, job_id).status == "cancelled"


@pytest.mark.parametrize("case", ["another kind", "finished", "unknown"])
def test_a_message_that_claims_nothing_is_skipped(settings, sessions, case):
    job_id = new_job(sessions, "succeeded" if case == "finished" else "queued")
    ran = []
    kind = "features" if case == "another kind" else "train"
    assert execute(settings, "no-such-job" if case == "unknown" else job_id, kind, ran.append) == "skipped"
    assert ran == []
    job = row(sessions, job_id)
    assert job.attempts == 0 and job.status == ("succeeded" if case == "finished" else "queued")


def test_the_heartbeat_keeps_the_lease_and_notices_when_it_is_lost(tmp_path):
    settings = make_settings(tmp_path, lease_seconds=0.2)  # a beat every 0.05 s
    with sqlite_store(settings) as sessions:
        job_id = new_job(sessions)
        beats, noticed = [], threading.Event()

        def runner(ctx):
            first = row(sessions, job_id).heartbeat_at
            deadline = time.monotonic() + 5
            while row(sessions, job_id).heartbeat_at == first and time.monotonic() < deadline:
                time.sleep(0.02)
            beats.append(row(sessions, job_id).heartbeat_at > first)
            with sessions.begin() as s:  # the lease moves to another worker behind this one's back
                s.get(Job, job_id).lease_token = "someone-else"
            if ctx.lost.wait(5):
                noticed.set()
            with pytest.raises(JobStopped) as stopped:
                ctx.progress(0.5, "half")
            raise stopped.value

        assert execute(settings, job_id, "train", runner) == "lost"
        assert beats == [True] and noticed.is_set()
