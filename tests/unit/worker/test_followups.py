"""What follows a job's end: its dependants released or failed, a requeued job re-sent, a sweep's fine-tune
follow-ups created once. On a SQLite file store, with messages read back from an in-memory broker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from core.messages import task_labels
from db.models import Job, Run, Sweep, SweepCell
from tests.unit.worker.fakes import (
    Message,
    add_dataset,
    add_job,
    make_settings,
    memory_celery,
    published,
    sqlite_store,
    tiny_config,
)
from worker.followups import after_job, rank_cells, start_finetune_followups

WEIGHTS = {"name": "imagenet", "sha256": "ab" * 32, "path": "weights/resnet18.safetensors"}


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def sessions(settings):
    with sqlite_store(settings) as sessions:
        yield sessions


@pytest.fixture
def celery(settings):
    app = memory_celery(settings)
    yield app
    published(app)  # leave nothing in the process-wide memory broker
    app.close()


def message(job: Job) -> Message:
    """What ``core.messages.send`` publishes for ``job``: its id, named by attempt, on its queue."""
    return Message("atelier.train", f"{job.id}.{job.attempts}", [job.id], task_labels(job), job.queue)


def test_a_succeeded_job_sends_the_jobs_waiting_for_it(settings, celery, sessions):
    with sessions.begin() as s:
        done, other = add_job(s, "succeeded"), add_job(s, "running")
        waiting = [add_job(s, depends_on=done.id), add_job(s, depends_on=done.id, queue="cpu", attempts=1)]
        add_job(s, "running", depends_on=done.id)  # already taken by a worker: not sent again
        add_job(s, depends_on=other.id)  # waits for another job
    after_job(settings, celery, sessions, done.id)
    assert sorted(published(celery), key=lambda m: m.task_id) == sorted(map(message, waiting), key=lambda m: m.task_id)


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_job_that_did_not_succeed_fails_the_jobs_waiting_for_it(settings, celery, sessions, status):
    with sessions.begin() as s:
        ended = add_job(s, status)
        waiting, unrelated = add_job(s, depends_on=ended.id), add_job(s)
    after_job(settings, celery, sessions, ended.id)
    assert published(celery) == []
    with sessions() as s:
        job = s.get(Job, waiting.id)
        assert job.status == "failed" and ended.id in job.error and job.finished_at is not None
        assert s.get(Job, unrelated.id).status == "queued"


def test_a_requeued_job_is_sent_again_and_only_then(settings, celery, sessions):
    with sessions.begin() as s:
        job = add_job(s, attempts=1)  # back in the queue after an OOM, with half its batch
    after_job(settings, celery, sessions, job.id, requeued=False)
    assert published(celery) == []  # its message went out already: a second would run it twice
    after_job(settings, celery, sessions, job.id, requeued=True)
    assert published(celery) == [message(job)]


def test_a_job_this_store_never_had_is_ignored(settings, celery, sessions):
    after_job(settings, celery, sessions, "no-such-job")
    assert published(celery) == []


def make_sweep(sessions, cells: list[tuple[str, float | None]], finetune_top: int = 2) -> str:
    """A grid sweep, one cell per (status, validation macro F1); cell 1's job starts from recorded weights."""
    with sessions.begin() as s:
        dataset = add_dataset(s)
        sweep = Sweep(
            dataset_id=dataset.id,
            arch="baseline-cnn",
            spec={"dataset": "d", "finetune_lr_scale": 0.5},
            spec_hash="0" * 64,
            finetune_top=finetune_top,
            metric="macro_f1",
        )
        s.add(sweep)
        s.flush()
        for i, (status, f1) in enumerate(cells):
            config = tiny_config(lr=1e-3 * (i + 1), mode="feature-extract").to_json()
            params = {"dataset_id": dataset.id, "config": config, "cell": i, **({"weights": WEIGHTS} if i == 1 else {})}
            job = add_job(s, status, params=params, group_id=sweep.id)
            run = Run(
                job_id=job.id,
                dataset_id=dataset.id,
                arch="baseline-cnn",
                config=config,
                best_val_macro_f1=f1,
                checkpoint_path=f"runs/cell-{i}/best.safetensors",
            )
            s.add(run)
            s.flush()
            s.add(
                SweepCell(
                    sweep_id=sweep.id,
                    cell_index=i,
                    stage="grid",
                    cell={"lr": config["lr"]},
                    job_id=job.id,
                    run_id=run.id,
                )
            )
        return sweep.id


def last_cell_job(sessions, sweep_id: str, index: int) -> str:
    with sessions() as s:
        return s.scalar(select(SweepCell.job_id).where(SweepCell.sweep_id == sweep_id, SweepCell.cell_index == index))


def test_the_last_cell_to_end_starts_fine_tuning_of_the_best_cells_once(settings, celery, sessions):
    sweep_id = make_sweep(sessions, [("succeeded", 0.5), ("succeeded", 0.9), ("succeeded", 0.7), ("failed", None)])
    after_job(settings, celery, sessions, last_cell_job(sessions, sweep_id, 3))

    with sessions() as s:
        follow = s.execute(
            select(SweepCell, Job)
            .join(Job, SweepCell.job_id == Job.id)
            .where(SweepCell.sweep_id == sweep_id, SweepCell.stage == "finetune")
            .order_by(SweepCell.cell_index)
        ).all()
        assert [c.cell_index for c, _ in follow] == [1, 2]  # the two best by validation macro F1
        for cell, job in follow:
            config = job.params["config"]
            assert (job.kind, job.status, job.group_id) == ("train", "queued", sweep_id)
            assert config["mode"] == "fine-tune" and config["views"] == 1
            assert config["lr"] == pytest.approx(1e-3 * (cell.cell_index + 1) * 0.5)  # the cell's lr x the scale
            assert job.params["init_head"] == f"runs/cell-{cell.cell_index}/best.safetensors"
            assert job.params["cell"] == cell.cell_index
            assert ("weights" in job.params) == (cell.cell_index == 1)  # the backbone the cell started from
            assert job.params.get("weights", WEIGHTS) == WEIGHTS
            run = s.get(Run, cell.run_id)
            assert run.job_id == job.id and run.config == config
        jobs = [job for _, job in follow]
    assert sorted(published(celery), key=lambda m: m.task_id) == sorted(map(message, jobs), key=lambda m: m.task_id)

    start_finetune_followups(settings, celery, sessions, sweep_id)  # another cell's worker, a `resume`...
    assert published(celery) == []
    with sessions() as s:
        assert len(s.scalars(select(SweepCell).where(SweepCell.stage == "finetune")).all()) == 2
        assert len(s.scalars(select(Job).where(Job.group_id == sweep_id)).all()) == 4 + 2


def test_no_follow_up_while_a_cell_is_still_running(settings, celery, sessions):
    sweep_id = make_sweep(sessions, [("succeeded", 0.5), ("running", None), ("succeeded", 0.7)])
    after_job(settings, celery, sessions, last_cell_job(sessions, sweep_id, 2))
    assert published(celery) == []
    with sessions() as s:
        assert s.scalars(select(SweepCell).where(SweepCell.stage == "finetune")).all() == []


def test_rank_cells_best_first_ties_by_index_unscored_left_out():
    def cell(index, f1):
        return SimpleNamespace(cell_index=index), SimpleNamespace(best_val_macro_f1=f1, best_val_top1=1 - index / 10)

    cells = [cell(0, 0.5), cell(1, None), cell(2, 0.8), cell(3, 0.5)]
    assert [c.cell_index for c, _ in rank_cells(cells, "macro_f1")] == [2, 0, 3]
    assert [c.cell_index for c, _ in rank_cells(cells, "top1")] == [0, 1, 2, 3]
