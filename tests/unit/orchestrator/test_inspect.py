"""``ensure_inspection`` before any worker: what it refuses (one line each), and a finished identical job's
folder handed back without the broker (unreachable here) being asked for anything."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.inspection import inspect_key
from core.params import inspect_params
from core.settings import Settings
from db import jobs
from db.models import Dataset, Image, Run, StyleBatch, StyleBatchPair, Stylization
from orchestrator.lab import Lab
from orchestrator.reports.inspect import batch_work_count, ensure_inspection


@pytest.fixture
def lab(cli_env):
    lab = Lab(Settings.from_env(cli_env))
    yield lab
    lab.close()


def add_run(s, dataset_id: int, status: str = "succeeded", checkpoint: str | None = "runs/1/best.safetensors") -> int:
    job = jobs.create_job(s, "train", {"dataset_id": dataset_id})
    job.status = status
    run = Run(job_id=job.id, dataset_id=dataset_id, arch="baseline-cnn", config={}, checkpoint_path=checkpoint)
    s.add(run)
    s.flush()
    return run.id


@pytest.fixture
def store(lab):
    """Runs: finished, running, without a checkpoint; a finished batch of the first and one still running."""
    with lab.sessions.begin() as s:
        ds = Dataset(name="d", root="/nowhere", format="imagefolder", seed=0, split=[0.7, 0.15, 0.15], classes=["a"])
        s.add(ds)
        s.flush()
        runs = {
            "done": add_run(s, ds.id),
            "running": add_run(s, ds.id, "running"),
            "no checkpoint": add_run(s, ds.id, "failed", None),
        }
        batches = {}
        for name, run, status in (("done", runs["done"], "succeeded"), ("running", runs["done"], "running")):
            batch = StyleBatch(dataset_id=ds.id, classifier_run_id=run, spec={})
            s.add(batch)
            s.flush()
            chunk = jobs.create_job(s, "stylize", {})
            chunk.group_id, chunk.status = batch.id, status
            batches[name] = batch.id
        other = StyleBatch(dataset_id=ds.id, classifier_run_id=runs["running"], spec={})
        s.add(other)
        s.flush()
        batches["other run"] = other.id
    return runs, batches


def test_what_cannot_be_inspected_is_refused_in_one_line(lab, store):
    runs, batches = store
    cases = [
        ((999, None), "run 999 does not exist"),
        ((runs["running"], None), "has not finished (its train job is running)"),
        ((runs["no checkpoint"], None), "has no checkpoint"),
        ((runs["done"], "nope"), "style batch 'nope' does not exist"),
        ((runs["done"], batches["other run"]), f"was classified by run {runs['running']}, not run {runs['done']}"),
        ((runs["done"], batches["running"]), "still has 1 job(s) queued or running"),
        ((0, None), "run id must be an integer"),
    ]
    for args, fragment in cases:
        with pytest.raises(ConfigError) as err:
            ensure_inspection(lab, *args)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    for options, fragment in (({"perplexity": 0}, "perplexity"), ({"per_artist": -1}, "per_artist")):
        with pytest.raises(ConfigError, match=fragment):
            ensure_inspection(lab, runs["done"], None, **options)


def test_a_finished_identical_job_with_its_files_is_reused_without_the_broker(lab, store):
    runs, batches = store
    params = inspect_params(inspect_key(runs["done"], batches["done"], 3, 8, 0, 30.0, works=0), jobs.params_hash)
    with lab.sessions.begin() as s:
        jobs.create_job(s, "inspect", params).status = "succeeded"
    folder = lab.settings.artifacts / params["output"]
    folder.mkdir(parents=True)
    (folder / "map.json").write_text("{}")
    with pytest.raises(ConfigError, match="broker .* is not reachable"):  # activations.json missing: run again
        ensure_inspection(lab, runs["done"], batches["done"])
    (folder / "activations.json").write_text("[]")
    assert ensure_inspection(lab, runs["done"], batches["done"]) == params["output"]
    assert params["output"].startswith("inspect/")


def test_a_batch_that_grew_after_its_inspection_is_inspected_again(lab, store):
    """A failed chunk retried after a report adds works: the cached map would miss them, so the key changes."""
    runs, batches = store
    with lab.sessions() as s:
        before = batch_work_count(s, batches["done"])
    with lab.sessions.begin() as s:
        add_stylization(s, batches["done"], runs["done"])
    with lab.sessions() as s:
        after = batch_work_count(s, batches["done"])
        assert batch_work_count(s, None) is None
    assert (before, after) == (0, 1)
    keys = [inspect_key(runs["done"], batches["done"], 3, 8, 0, 30.0, works=n) for n in (before, after)]
    first, second = (inspect_params(k, jobs.params_hash)["output"] for k in keys)
    assert first != second


def add_stylization(s, batch_id: str, run_id: int) -> None:
    s.add(StyleBatchPair(batch_id=batch_id, pair_hash="h1", job_id=None))
    job = jobs.create_job(s, "stylize", {})
    image = Image(dataset_id=s.get(StyleBatch, batch_id).dataset_id, path="a/1.png", label="a", split="test")
    s.add(image)
    s.flush()
    s.add(
        Stylization(
            pair_hash="h1", batch_id=batch_id, job_id=job.id, content_image_id=image.id, content_artist="a",
            style_image_id=image.id, style_artist="a", content_weight=1.0, style_weight=1e3, steps=1, size=24,
            optimizer="adam", vgg_weights="random", content_loss=0.0, style_loss=0.0, classifier_run_id=run_id,
            predicted="a", top3=[["a", 1.0]], outcome="same", image_path="stylized/x/h1.png",
        )
    )  # fmt: skip
