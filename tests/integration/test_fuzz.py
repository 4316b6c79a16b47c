"""Malformed job rows and messages fed to a real worker: each ends with a clear
one-line error (or is logged and dropped), and the worker process goes on."""

import json
import uuid

import pytest

from core import messages
from core.config import StyleConfig, TrainConfig
from core.messages import configure
from core.settings import Settings
from db import jobs
from db.engine import make_engine, make_sessionmaker
from db.models import Dataset, Run
from tests.conftest import unique
from tests.services import wait_until

pytestmark = pytest.mark.integration

CONFIG = TrainConfig(
    arch="baseline-cnn", num_classes=2, epochs=1, batch_size=4, image_size=32, augment="none"
).to_json()
STYLE = vars(StyleConfig(size=24, steps=1))
PAIR = {"content": 1, "style": 2, "style_weight": 1.0, "seed": 0, "hash": "0" * 64}


def train(**top):
    return {"dataset": "x", "dataset_id": 1, "config": CONFIG, **top}


def with_config(**fields):
    return train(config={**CONFIG, **fields})


MALFORMED = [
    ("train", {}, "'dataset_id' is a required property"),
    ("train", train(dataset_id="1"), "dataset_id: '1' is not of type 'integer'"),
    ("train", with_config(epochs="ten"), "config.epochs"),
    ("train", with_config(epochs=10**15), "config.epochs"),
    ("train", with_config(batch_size=2**62), "config.batch_size"),
    ("train", with_config(image_size=10**7), "config.image_size"),
    ("train", with_config(lr=[1, 2]), "config.lr"),
    ("train", with_config(arch="x" * 100_000), "config.arch"),
    ("train", train(features="../../../../etc/passwd"), "leaves the artifacts root"),
    ("train", train(init_head="/etc/shadow"), "is absolute"),
    ("train", train(), "has no run in the store"),  # a train job's run is the row naming it in runs.job_id
    (
        "features",
        {
            "dataset_id": 1,
            "arch": "resnet18",
            "image_size": 32,
            "augment": "none",
            "views": 10**9,
            "output": "f.safetensors",
        },
        "views",
    ),
    (
        "features",
        {
            "dataset_id": 1,
            "arch": "resnet18",
            "image_size": 32,
            "augment": "none",
            "views": 1,
            "output": "../../outside.safetensors",
        },
        "leaves the artifacts root",
    ),
    (
        "stylize",
        {"batch_id": "../../../tmp/x", "classifier_run_id": 1, "style": STYLE, "pairs": [PAIR], "device_batch": 1},
        "batch_id",
    ),
    (
        "stylize",
        {
            "batch_id": "b",
            "classifier_run_id": 1,
            "style": {**STYLE, "size": "big"},
            "pairs": [PAIR],
            "device_batch": 1,
        },
        "style.size",
    ),
    (
        "stylize",
        {
            "batch_id": "b",
            "classifier_run_id": 1,
            "style": STYLE,
            "pairs": [{**PAIR, "hash": "../x"}],
            "device_batch": 1,
        },
        "pairs.0.hash",
    ),
    (
        "stylize",
        {"batch_id": "b", "classifier_run_id": 876543, "style": STYLE, "pairs": [PAIR], "device_batch": 1},
        "classifier run 876543 does not exist",
    ),
]


@pytest.fixture(scope="module")
def lab(sqlite_stack):
    settings = Settings.from_env(sqlite_stack.env)
    engine = make_engine(settings.database_url)
    celery = configure(settings)
    yield settings, make_sessionmaker(engine), celery
    celery.close()
    engine.dispose()


def insert(sessions, kind, params):
    with sessions.begin() as s:
        job = jobs.create_job(s, kind, params)
        s.expunge(job)
    return job


def test_malformed_job_rows_fail_with_one_clear_line(sqlite_stack, lab):
    _settings, sessions, celery = lab
    created = [(insert(sessions, kind, params), fragment) for kind, params, fragment in MALFORMED]
    messages.send(celery, [job for job, _ in created])
    for job, fragment in created:
        row = sqlite_stack.wait_job(job.id, timeout=120)
        assert row["status"] == "failed", (fragment, row)
        assert fragment in row["error"] and "\n" not in row["error"] and len(row["error"]) < 400, row["error"]
    assert all(w.alive() for w in sqlite_stack.workers)


def test_unicode_oddities_reach_a_clear_error(sqlite_stack, lab):
    stack = sqlite_stack
    _settings, sessions, celery = lab
    name = unique("fuzz-\u00e9\u202e\U0001f3a8")
    stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "4", "--size", "32")
    config = {**CONFIG, "arch": "r\u00e9snet\u202e18\u0000"}
    with sessions.begin() as s:
        dataset_id = s.query(Dataset.id).filter(Dataset.name == name).scalar()
        job = jobs.create_job(s, "train", {"dataset": name, "dataset_id": dataset_id, "config": config})
        s.add(Run(job_id=job.id, dataset_id=dataset_id, arch="?", config=config))
        s.flush()
        s.expunge(job)
    messages.send(celery, [job])
    row = stack.wait_job(job.id, timeout=120)
    assert row["status"] == "failed" and "unknown arch" in row["error"] and "\\u202e" in row["error"], row


def test_malformed_messages_are_logged_and_dropped(sqlite_stack, lab):
    stack = sqlite_stack
    _settings, sessions, celery = lab
    worker = stack.workers[0]
    name = unique("fuzzmsg")
    stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "4", "--size", "32")
    good = stack.json(
        "train",
        "--dataset",
        name,
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--augment",
        "none",
    )
    assert stack.wait_job(good["job"])["status"] == "succeeded"
    with sessions.begin() as s:  # a queued train job, to be named by a message of the wrong kind
        (params,) = [
            json.loads(r["params"]) for r in stack.query(f"SELECT params FROM jobs WHERE id = '{good['job']}'")
        ]
        job = jobs.create_job(s, "train", params)
        s.add(Run(job_id=job.id, dataset_id=params["dataset_id"], arch="baseline-cnn", config=params["config"]))
        s.flush()
        s.expunge(job)

    log_before = worker.log.read_text()
    for name_, args in [
        ("atelier.train", []),
        ("atelier.train", [{"evil": 1}]),
        ("atelier.train", ["x" * 10_000]),
        ("atelier.features", [str(uuid.uuid4())]),
        ("atelier.no-such-task", ["x"]),
        ("atelier.stylize", [job.id]),
    ]:
        celery.send_task(name_, args=args, queue="gpu")

    def logged(text):
        return lambda: text in worker.log.read_text()[len(log_before) :]

    wait_until(logged("refused train message"), 60, "the dict job id to be refused")
    wait_until(logged("no-such-task"), 60, "the unregistered task to be logged")
    wait_until(logged(f"job {job.id} not claimable"), 60, "the wrong-kind message to claim nothing")
    (row,) = stack.query(f"SELECT status, attempts FROM jobs WHERE id = '{job.id}'")
    assert (row["status"], row["attempts"]) == ("queued", 0)  # a stray message did not fail a good job
    messages.send(celery, [job])
    assert stack.wait_job(job.id)["status"] == "succeeded"  # and the worker is still there to run it
    assert worker.alive()
