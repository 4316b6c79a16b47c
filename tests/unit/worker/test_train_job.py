"""``run_train`` end to end on a tiny synthetic dataset (2 artists, 32 px, 2 epochs), with a JobContext
built by hand on a SQLite file store: no Celery, no worker process."""

from __future__ import annotations

import threading

import pytest
import torch
from sqlalchemy import select

from corpus.synth import write_synthetic
from db import jobs
from db.models import EpochMetric, Image, Job, Prediction, Run
from tests.unit.worker.fakes import add_dataset, make_settings, sqlite_store, tiny_config
from worker.lifecycle import JobContext, JobStopped, Resubmit
from worker.ml.checkpoint import SavedState, atomic_save
from worker.oom import simulated_oom
from worker.train_job import run_train

SPLITS = ["train"] * 4 + ["val"] * 2 + ["test"] * 2  # per artist, by painting number


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture
def sessions(settings):
    with sqlite_store(settings) as sessions:
        yield sessions


@pytest.fixture
def job_id(tmp_path, sessions):
    """A queued train job for a 2-epoch run on 16 synthetic paintings (8 train, 4 val, 4 test)."""
    root = tmp_path / "paintings"
    artists = write_synthetic(root, artists=2, per_artist=len(SPLITS), size=32)
    with sessions.begin() as s:
        dataset = add_dataset(s, root, tuple(sorted(artists)))
        for artist in artists:
            for k, split in enumerate(SPLITS):
                s.add(Image(dataset_id=dataset.id, path=f"{artist}/{k:04d}.jpg", label=artist, split=split))
        cfg = tiny_config()
        job = jobs.create_job(
            s, "train", {"dataset": "tiny", "dataset_id": dataset.id, "arch": cfg.arch, "config": cfg.to_json()}
        )
        s.add(Run(job_id=job.id, dataset_id=dataset.id, arch=cfg.arch, config=cfg.to_json()))
        return job.id


class Reports(list):
    """The (fraction, message) a job reports; ``on(prefix, action)`` runs ``action`` when a message starts so."""

    def __init__(self):
        super().__init__()
        self.actions = {}

    def __call__(self, fraction: float, message: str) -> None:
        self.append((fraction, message))
        for prefix, action in self.actions.items():
            if message.startswith(prefix):
                action()


def context(settings, sessions, job_id: str, reports: Reports) -> JobContext:
    """What ``lifecycle.execute`` hands a runner: the job claimed, its params, a progress report."""
    with sessions.begin() as s:
        claim = jobs.claim(s, job_id, "test-worker", settings.lease_seconds, kind="train")
        params = dict(s.get(Job, job_id).params)
    assert claim is not None
    return JobContext(settings, sessions, claim, job_id, "train", params, threading.Event(), reports)


def the_run(sessions, job_id: str) -> Run:
    with sessions() as s:
        return s.scalar(select(Run).where(Run.job_id == job_id))


def attempt_files(settings, run: Run, attempt: int) -> set[str]:
    folder = settings.artifacts / "runs" / str(run.id) / f"attempt-{attempt}"
    return {p.name for p in folder.iterdir()}


def test_every_epoch_is_persisted_then_the_best_checkpoint_predicts_the_test_split(settings, sessions, job_id):
    reports = Reports()
    run_train(context(settings, sessions, job_id, reports))

    assert reports[0] == (0.0, "caching 16 images at 32px")
    epochs = [(f, m.split(" val")[0]) for f, m in reports[1:] if " val " in m]
    assert epochs == [(0.5, "epoch 1/2"), (1.0, "epoch 2/2")]
    # Inside an epoch too (throttled to one write a second): the first training step is reported at once.
    assert reports[1] == (0.5, "epoch 1/2: 8/8")
    run = the_run(sessions, job_id)
    with sessions() as s:
        metrics = s.scalars(select(EpochMetric).where(EpochMetric.run_id == run.id)).all()
        predictions = s.scalars(select(Prediction).where(Prediction.run_id == run.id)).all()
        test_images = {i.id: i.label for i in s.scalars(select(Image).where(Image.split == "test"))}
        job = s.get(Job, job_id)
    assert sorted((m.epoch, m.phase, m.stage) for m in metrics) == [
        (1, "train", "main"),
        (1, "val", "main"),
        (2, "train", "main"),
        (2, "val", "main"),
    ]
    best_val = next(m for m in metrics if (m.epoch, m.phase) == (run.best_epoch, "val"))
    assert run.best_val_macro_f1 == best_val.macro_f1 and run.best_val_top1 == best_val.top1
    assert all(m.macro_f1 <= best_val.macro_f1 for m in metrics if m.phase == "val")

    # The row names this attempt's newest files; superseded ones were deleted.
    folder = f"runs/{run.id}/attempt-1"
    assert (run.last_epoch, run.state_path) == (2, f"{folder}/state-epoch-2.safetensors")
    assert run.checkpoint_path == f"{folder}/best-epoch-{run.best_epoch}.safetensors"
    assert attempt_files(settings, run, 1) == {"state-epoch-2.safetensors", f"best-epoch-{run.best_epoch}.safetensors"}
    assert SavedState.load(settings.artifacts / run.state_path).progress.epoch == 2  # a retry would resume there

    assert {p.image_id: p.label for p in predictions} == test_images
    assert all(p.correct == (p.predicted == p.label) == (p.top3[0][0] == p.label) for p in predictions)
    assert all(len(p.top3) == 2 and sum(q for _, q in p.top3) == pytest.approx(1, abs=1e-5) for p in predictions)
    assert run.test_top1 == pytest.approx(sum(p.correct for p in predictions) / 4)
    assert sum(map(sum, run.test_confusion)) == 4
    assert (job.progress, job.message.split(" val")[0]) == (1.0, "epoch 2/2")


def cancel(sessions, job_id: str) -> None:
    with sessions.begin() as s:  # `atelier cancel`
        s.get(Job, job_id).status = "cancelled"


def test_a_cancel_stops_the_run_with_the_row_on_its_last_recorded_epoch(settings, sessions, job_id):
    reports = Reports()
    reports.actions["epoch 1/2 val"] = lambda: cancel(sessions, job_id)
    with pytest.raises(JobStopped) as stopped:
        run_train(context(settings, sessions, job_id, reports))
    assert stopped.value.status == "cancelled"
    run = the_run(sessions, job_id)
    with sessions() as s:
        assert {m.epoch for m in s.scalars(select(EpochMetric).where(EpochMetric.run_id == run.id))} == {1}
    # Epoch 2's files were written before its row was refused; the row still names epoch 1's, which are there.
    assert run.last_epoch == 1 and run.best_epoch == 1
    assert (settings.artifacts / run.state_path).is_file() and (settings.artifacts / run.checkpoint_path).is_file()
    assert the_run(sessions, job_id).test_top1 is None


def test_a_cancel_stops_the_run_between_batches_not_at_the_end_of_the_epoch(settings, sessions, job_id):
    with sessions.begin() as s:  # two steps per epoch: batches of 4 of the 8 training images
        job = s.get(Job, job_id)
        job.params = {**job.params, "config": {**job.params["config"], "batch_size": 4}}
    reports = Reports()
    reports.actions["epoch 1/2: 4/8"] = lambda: cancel(sessions, job_id)  # after the first training step
    ctx = context(settings, sessions, job_id, reports)
    ctx.tick_seconds = 0.0  # every step checks (a real job: once a second)
    with pytest.raises(JobStopped) as stopped:
        run_train(ctx)
    assert stopped.value.status == "cancelled"
    assert reports[-1][1] == "epoch 1/2: 4/8"  # the second step's check stopped it: no later report
    assert the_run(sessions, job_id).last_epoch == 0  # epoch 1 never finished


def test_a_retried_job_resumes_after_its_last_recorded_epoch(settings, sessions, job_id):
    first = Reports()
    first.actions["epoch 1/2 val"] = lambda: cancel(sessions, job_id)
    with pytest.raises(JobStopped):
        run_train(context(settings, sessions, job_id, first))
    with sessions.begin() as s:  # `atelier retry`
        s.get(Job, job_id).status = "queued"

    again = Reports()
    ctx = context(settings, sessions, job_id, again)
    assert ctx.claim.attempt == 2
    run_train(ctx)
    messages = [m.split(" val")[0] for _, m in again[1:]]
    assert messages == ["resuming after epoch 1", "epoch 2/2: 8/8", "epoch 2/2"]
    assert again[1][0] == 0.5
    run = the_run(sessions, job_id)
    assert (run.last_epoch, run.state_path) == (2, f"runs/{run.id}/attempt-2/state-epoch-2.safetensors")
    assert "state-epoch-1.safetensors" not in attempt_files(settings, run, 2)  # epoch 1 was not trained again
    with sessions() as s:
        assert {(m.epoch, m.phase) for m in s.scalars(select(EpochMetric).where(EpochMetric.run_id == run.id))} == {
            (1, "train"),
            (1, "val"),
            (2, "train"),
            (2, "val"),
        }
    assert run.test_top1 is not None


def test_out_of_memory_resubmits_the_job_with_half_the_batch(settings, sessions, job_id):
    with simulated_oom(4), pytest.raises(Resubmit) as resubmit:  # a batch of 8 does not fit, as on a small GPU
        run_train(context(settings, sessions, job_id, Reports()))
    params = resubmit.value.params
    assert params["config"]["batch_size"] == 4 and [r["batch_size"] for r in params["oom_retries"]] == [8]
    assert the_run(sessions, job_id).config["batch_size"] == 4  # the run reports the batch it will train with
    with sessions() as s:
        assert s.get(Job, job_id).params["config"]["batch_size"] == 8  # the lifecycle requeues it, not the runner


def test_the_features_of_a_feature_extract_cell_train_a_head(settings, sessions, job_id):
    # A features file as the features job writes it: (N, V, C, H, W) bf16 views, labels and test image ids.
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        labels = torch.arange(n) % 2
        feats = torch.randn(n, 2, 8, 2, 2, generator=g) + 3 * labels.view(-1, 1, 1, 1, 1)  # (N, V, C, H, W)
        tensors[f"{split}_features"], tensors[f"{split}_labels"] = feats.bfloat16(), labels
    with sessions() as s:
        tensors["test_ids"] = torch.tensor(sorted(i.id for i in s.scalars(select(Image).where(Image.split == "test"))))
    atomic_save(tensors, settings.artifacts / "features" / "f.safetensors", {"classes": '["a", "b"]'})
    cfg = tiny_config(mode="feature-extract", views=2)
    with sessions.begin() as s:
        job = s.get(Job, job_id)
        job.params = {**job.params, "config": cfg.to_json(), "features": "features/f.safetensors"}
    reports = Reports()
    run_train(context(settings, sessions, job_id, reports))
    assert not any(m.startswith("caching") for _, m in reports)  # no image was decoded
    run = the_run(sessions, job_id)
    assert run.last_epoch == 2 and run.test_top1 is not None
    with sessions() as s:
        assert len(s.scalars(select(Prediction).where(Prediction.run_id == run.id)).all()) == 4
