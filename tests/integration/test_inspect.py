"""The inspect job behind reports, end to end through a real worker: ``ensure_inspection`` for a run and for a
run with a style batch, its files as ``core.inspection`` describes them, and a second call reusing the job."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from core.errors import ConfigError
from core.inspection import inspect_key, read_inspection
from core.params import inspect_params
from core.settings import Settings
from corpus.thumbs import thumb_relative
from db import jobs as db_jobs
from db.models import Job
from orchestrator.lab import Lab
from orchestrator.reports.inspect import ensure_inspection
from tests.conftest import unique
from tests.services import wait_until
from tests.tiny_classifier import tiny_dataset, tiny_run

pytestmark = pytest.mark.integration

# A style batch in seconds: one pair per artist cell, 3 Adam steps at 24 px, random VGG weights.
TINY = [
    *("--per-cell", "1", "--steps", "3", "--size", "24", "--chunk", "4", "--device-batch", "3"),
    *("--optimizer", "adam", "--norm-images", "4", "--init", "content", "--vgg-weights", "random"),
]

PER_ARTIST = 2
CONTENTS = 2


@pytest.fixture(scope="module")
def study(sqlite_stack):
    """3 synthetic artists x 20 paintings (9 test images), a small classifier, and a style batch on it."""
    stack = sqlite_stack
    name = tiny_dataset(stack, unique("inspect"), per_artist=20)
    run = tiny_run(stack, name)
    batch = stack.json(
        "stylize",
        *("--dataset", name, "--classifier", str(run), "--pairs", "cross-artist", "--style-weight", "0,1e2"),
        *TINY,
    )

    def ended():
        jobs = stack.query(f"SELECT status, error FROM jobs WHERE group_id = '{batch['batch']}'")
        return jobs if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs) else None

    assert all(j["status"] == "succeeded" for j in wait_until(ended, 240, "the style batch", interval=1))
    return name, run, batch["batch"]


@pytest.fixture(scope="module")
def lab(sqlite_stack):
    lab = Lab(Settings.from_env(sqlite_stack.env))
    yield lab
    lab.close()


def inspect_jobs(stack) -> int:
    return stack.query("SELECT count(*) AS n FROM jobs WHERE kind = 'inspect'")[0]["n"]


def test_a_run_is_mapped_and_its_activations_drawn_once(sqlite_stack, study, lab):
    stack, (name, run, _) = sqlite_stack, study
    output = ensure_inspection(lab, run, None, per_artist=PER_ARTIST)
    doc, acts = read_inspection(lab.settings.artifacts, output)
    test = stack.query(
        f"SELECT i.id, i.label FROM images i JOIN datasets d ON d.id = i.dataset_id "
        f"WHERE d.name = '{name}' AND i.split = 'test' ORDER BY i.id"
    )
    assert len(test) == 9 and doc["method"] == "t-SNE" and doc["batch_id"] is None
    assert [(p["image_id"], p["label"]) for p in doc["points"]] == [(r["id"], r["label"]) for r in test]
    assert all(p["kind"] == "test" and math.isfinite(p["x"]) and math.isfinite(p["y"]) for p in doc["points"])
    stored = stack.query(f"SELECT image_id, predicted FROM predictions WHERE run_id = {run} ORDER BY image_id")
    assert [(p["image_id"], p["predicted"]) for p in doc["points"]] == [(r["image_id"], r["predicted"]) for r in stored]
    check_activations(lab.settings.artifacts / output, acts, doc["classes"])

    jobs = inspect_jobs(stack)
    assert ensure_inspection(lab, run, None, per_artist=PER_ARTIST) == output  # reused: same folder, no new job
    assert inspect_jobs(stack) == jobs
    assert read_inspection(lab.settings.artifacts, output) == (doc, acts)


def check_activations(folder, acts, classes) -> None:
    assert sorted(a["label"] for a in acts) == sorted(classes * PER_ARTIST)  # per_artist of each
    for entry in acts:
        assert len(entry["maps"]) == 3 and entry["maps"][-1]["what"].startswith("Grad-CAM features.9 for ")
        for m in entry["maps"]:
            with Image.open(folder / m["file"]) as img:
                img.load()
                assert img.size == (160, 160)


def test_a_batch_places_its_sampled_contents_and_all_their_stylizations(sqlite_stack, study, lab):
    stack, (_, run, batch) = sqlite_stack, study
    output = ensure_inspection(lab, run, batch, per_artist=PER_ARTIST, contents=CONTENTS)
    doc, _ = read_inspection(lab.settings.artifacts, output)
    stylized = [p for p in doc["points"] if p["kind"] == "stylized"]
    contents = {p["content_image_id"] for p in stylized}
    assert len(contents) == CONTENTS and doc["batch_id"] == batch
    rows = stack.query(
        f"SELECT s.id, s.content_image_id, s.style_artist, s.style_weight, s.content_artist FROM stylizations s "
        f"JOIN style_batch_pairs b ON b.pair_hash = s.pair_hash WHERE b.batch_id = '{batch}' ORDER BY s.id"
    )
    mine = [r for r in rows if r["content_image_id"] in contents]
    assert [(p["stylization_id"], p["style_artist"], p["beta"], p["label"]) for p in stylized] == [
        (r["id"], r["style_artist"], r["style_weight"], r["content_artist"]) for r in mine
    ]
    test_ids = {p["image_id"] for p in doc["points"] if p["kind"] == "test"}
    assert len(test_ids) == 9
    assert {p["image_id"] for p in doc["points"] if p["kind"] == "content"} == contents - test_ids
    assert all(math.isfinite(p["x"]) and math.isfinite(p["y"]) for p in doc["points"])
    # The stylize job wrote every work's thumbnail beside it, and its controls'.
    artifacts = lab.settings.artifacts
    for r in stack.query(f"SELECT image_path FROM stylizations WHERE batch_id = '{batch}'"):
        with Image.open(artifacts / thumb_relative(r["image_path"])) as img:
            assert img.format == "JPEG"
    for r in stack.query(f"SELECT image_path FROM style_controls WHERE classifier_run_id = {run}"):
        assert (artifacts / thumb_relative(r["image_path"])).is_file()

    jobs = inspect_jobs(stack)
    assert ensure_inspection(lab, run, batch, per_artist=PER_ARTIST, contents=CONTENTS) == output
    assert inspect_jobs(stack) == jobs


def test_a_job_that_fails_or_outlasts_the_timeout_is_one_line(sqlite_stack, study, lab):
    stack, (_, run, batch) = sqlite_stack, study
    folder = lab.settings.artifacts / "stylized" / batch
    away = folder.rename(folder.with_name(f"{batch}-away"))  # the batch's works are gone
    try:
        with pytest.raises(ConfigError, match=r"^inspect job \S+ failed: stylization \d+ \(.*\): file not found$"):
            ensure_inspection(lab, run, batch, contents=1, seed=7)
    finally:
        away.rename(folder)
    # A job that never ends in time, deterministically: an identical job that looks claimed by a worker
    # (running, never sent), so the call waits for it rather than submitting its own.
    params = inspect_params(inspect_key(run, None, 3, 8, 8, 30.0), db_jobs.params_hash)
    with lab.sessions() as s, s.begin():
        pending = db_jobs.new_job("inspect", params)
        pending.status = "running"
        s.add(pending)
    with pytest.raises(ConfigError, match=r"has not ended after 0\.01 s .*atelier status"):
        ensure_inspection(lab, run, None, seed=8, timeout=0.01)
    jobs = inspect_jobs(stack)
    with lab.sessions() as s, s.begin():
        s.get(Job, pending.id).status = "queued"  # as if its message was lost: the next call sends it again
    ensure_inspection(lab, run, None, seed=8)
    assert stack.wait_job(pending.id)["status"] == "succeeded"  # that job ran; no second one was made
    assert inspect_jobs(stack) == jobs
