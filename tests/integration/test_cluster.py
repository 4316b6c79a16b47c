"""The cluster of docker-compose.yml on loopback: Redis with a password over TLS only,
PostgreSQL, two workers and Flower, driven by the CLI like a lab would.

One module-scoped cluster runs one small workload (a grid and a style batch); the
tests then look at it from the store, from Flower and from the logs.
"""

import json
import pickle
import uuid

import pytest
from kombu import Connection, Exchange, Producer

from tests.cluster import Flower, TaskWatcher, TlsRedisServer, make_certificates
from tests.conftest import make_stack, unique
from tests.services import Worker, wait_until
from tests.tiny_classifier import tiny_dataset, tiny_training

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

REDIS_PASSWORD = "redis-" + uuid.uuid4().hex  # unique, so finding it anywhere is never a coincidence
FLOWER_USER, FLOWER_PASSWORD = "atelier", "flower-" + uuid.uuid4().hex
WORKERS = ("gpu0@cluster-a", "gpu1@cluster-b")
GRID = [
    "--arch",
    "resnet18",
    "--weights",
    "random",
    "--image-size",
    "32",
    "--head",
    "gap",
    "--dense1",
    "8:8:16",
    "--dense2",
    "4",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--lr",
    "1e-3",
]
REFUSAL = "Refusing to deserialize untrusted content of type pickle"
TASK_NAMES = {"atelier.train", "atelier.features", "atelier.stylize", "atelier.inspect"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pg_server):
    root = tmp_path_factory.mktemp("cluster")
    redis = TlsRedisServer(root / "redis", REDIS_PASSWORD, make_certificates(root / "certs"))
    stack = make_stack(root, redis.url(0), pg_server.create_database(unique("cluster").replace("-", "_")))
    flower = None
    try:
        stack.atelier("db", "upgrade")  # migrate once, as compose's `migrate` service does, before workers race
        # Both workers boot at once: each imports torch, which is most of a worker's start-up.
        stack.workers += [
            Worker(stack.process_env(), root / f"{name.split('@')[0]}.log", name=name) for name in WORKERS
        ]
        for w in stack.workers:
            w.wait_ready()
        flower = Flower(stack.process_env(), root / "flower.log", FLOWER_USER, FLOWER_PASSWORD)
        yield stack, redis, flower
    finally:
        if flower is not None:
            flower.stop()
        stack.stop()
        redis.stop()


@pytest.fixture(scope="module")
def pickled_message(cluster):
    """A pickled atelier.train message sent straight to the gpu queue, as an intruder on the broker would;
    returns the worker(s) that logged refusing it."""
    stack, redis, _ = cluster
    task_id = str(uuid.uuid4())  # Celery protocol 2: the task and its id travel in the headers
    body = pickle.dumps([["not-a-job"], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    with Connection(redis.url(0)) as conn:
        # Raw bytes with pickle's content type, as an intruder would forge them: no pickle serializer
        # is enabled anywhere, not even in this test's producer.
        Producer(conn).publish(
            body,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            exchange=Exchange("gpu", type="direct"),
            routing_key="gpu",
            headers={"lang": "py", "task": "atelier.train", "id": task_id, "root_id": task_id},
        )
    return wait_until(lambda: refusing_workers(stack), 30, "a worker refusing the pickled message")


def refusing_workers(stack) -> list[Worker]:
    return [w for w in stack.workers if REFUSAL in w.log.read_text()]


@pytest.fixture(scope="module")
def workload(cluster, pickled_message):
    """A two-cell grid and a six-pair style batch, submitted through the CLI after the pickled message."""
    stack, _, flower = cluster
    watcher = TaskWatcher(flower)
    watcher.start()
    try:
        name = tiny_dataset(stack, unique("cluster"))
        grid = stack.json("grid", "--dataset", name, *GRID)
        classifier = tiny_training(stack, name)  # while the grid runs
        batch = stack.json(
            "stylize",
            "--dataset",
            name,
            "--classifier",
            str(classifier["run"]),
            "--per-cell",
            "1",
            "--style-weight",
            "1e2",
            "--steps",
            "3",
            "--size",
            "24",
            "--chunk",
            "3",
            "--device-batch",
            "3",
            "--optimizer",
            "adam",
            "--vgg-weights",
            "random",
        )
        groups = f"'{grid['sweep']}', '{batch['batch']}'"
        wait_until(
            lambda: (
                all(
                    r["status"] in ("succeeded", "failed", "cancelled")
                    for r in stack.query(f"SELECT status FROM jobs WHERE group_id IN ({groups})")
                )
                or None
            ),
            240,
            "grid and style batch",
            interval=1,
        )
    finally:
        watcher.stop()
    return {"dataset": name, "grid": grid, "classifier": classifier, "batch": batch, "progress": watcher.progress}


def test_every_cell_and_pair_succeeds_once_across_both_workers(cluster, workload):
    stack, _, _ = cluster
    sweep, batch = workload["grid"]["sweep"], workload["batch"]["batch"]
    cells = stack.query(f"SELECT cell_index, status FROM grid_leaderboard WHERE sweep_id = '{sweep}'")
    assert len(cells) == workload["grid"]["cells"] == 2
    assert sorted(c["cell_index"] for c in cells) == [0, 1] and all(c["status"] == "succeeded" for c in cells), cells

    assert workload["batch"]["pairs"] == 6
    pairs = stack.query(f"SELECT pair_hash FROM stylizations WHERE batch_id = '{batch}'")
    assert len(pairs) == 6 and len({p["pair_hash"] for p in pairs}) == 6

    jobs = stack.query(
        f"SELECT kind, status, attempts, worker FROM jobs WHERE group_id IN ('{sweep}', '{batch}') "
        f"OR id = '{workload['classifier']['job']}'"
    )
    assert all(j["status"] == "succeeded" and j["attempts"] == 1 for j in jobs), jobs
    assert {j["worker"] for j in jobs} == set(WORKERS)


def test_a_pickled_message_is_refused_and_the_worker_goes_on(cluster, pickled_message, workload):
    stack, _, _ = cluster
    (refuser,) = pickled_message
    assert "ContentDisallowed" in refuser.log.read_text()
    assert all(w.alive() for w in stack.workers)
    assert (
        stack.query(f"SELECT count(*) AS n FROM jobs WHERE worker = '{refuser.name}' AND status = 'succeeded'")[0]["n"]
        > 0
    )


def test_flower_lists_both_workers_and_readable_tasks(cluster, workload):
    stack, _, flower = cluster

    def workers():
        status, body = flower.get("/api/workers?refresh=1")
        return status == 200 and set(WORKERS) <= set(json.loads(body))

    wait_until(workers, 60, "Flower to list both workers", interval=1)
    # Flower reads queue lengths with its own Redis client, which knows TLS only from broker_use_ssl.
    status, body = flower.get("/api/queues/length")
    assert status == 200 and {"gpu", "cpu"} <= {q["name"] for q in json.loads(body)["active_queues"]}, body
    status, body = flower.get("/api/tasks")
    assert status == 200
    tasks = json.loads(body).values()
    assert {t["worker"] for t in tasks} == set(WORKERS)
    jobs = stack.query(
        f"SELECT id, kind FROM jobs WHERE group_id IN ('{workload['grid']['sweep']}', "
        f"'{workload['batch']['batch']}') OR id = '{workload['classifier']['job']}'"
    )
    for job in jobs:
        # A message's task id is "<job id>.<attempt>"; its kwargs are labels for people, not inputs.
        (task,) = [t for t in tasks if t["uuid"].startswith(job["id"] + ".")]
        assert task["name"] == f"atelier.{job['kind']}" and task["state"] == "SUCCESS", task
        labels = task["kwargs"]
        assert f"'kind': '{job['kind']}'" in labels, task
        assert "'dataset'" in labels, task
        if job["kind"] == "features":
            assert "'arch'" in labels, task
            continue
        if job["id"] != workload["classifier"]["job"]:
            assert ("'chunk'" if job["kind"] == "stylize" else "'cell'") in labels, task


def test_flower_refuses_requests_without_the_right_password(cluster):
    _, _, flower = cluster
    assert flower.get("/api/workers", auth=None)[0] == 401
    assert flower.get("/api/tasks", auth=(FLOWER_USER, "wrong"))[0] == 401
    assert flower.get("/api/tasks")[0] == 200


def test_flower_is_read_only(cluster):
    _, _, flower = cluster
    # Even with the password, the routes that would revoke tasks or stop workers are not served.
    assert flower.post("/api/task/revoke/some-task")[0] == 404
    assert flower.post(f"/api/worker/shutdown/{WORKERS[0]}")[0] == 404


def test_flower_shows_progress_of_running_tasks(workload):
    seen = workload["progress"]
    assert seen, "Flower never listed a task in state PROGRESS"
    for task in seen.values():
        assert task["state"] == "PROGRESS" and task["name"] in TASK_NAMES
        assert task["result"] and "%" in task["result"], task


def test_a_killed_workers_job_is_requeued_over_tls_by_the_other_reaper(cluster, workload):
    """Last but one: it leaves one worker. The survivor's reaper re-sends the job through the rediss:// broker."""
    stack, _, _ = cluster
    out = stack.json(
        "train",
        "--dataset",
        workload["dataset"],
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--epochs",
        "12",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--augment",
        "none",
    )
    running = wait_until(
        lambda: [
            r
            for r in stack.query(
                f"SELECT worker FROM jobs WHERE id = '{out['job']}' AND status = 'running' AND progress > 0"
            )
        ],
        120,
        "a running job",
    )
    (victim,) = [w for w in stack.workers if w.name == running[0]["worker"]]
    victim.kill()
    final = stack.wait_job(out["job"], timeout=120)
    assert (final["status"], final["attempts"]) == ("succeeded", 2), final
    (row,) = stack.query(f"SELECT worker FROM jobs WHERE id = '{out['job']}'")
    assert row["worker"] != victim.name


def test_the_redis_password_is_written_nowhere(cluster, workload):
    stack, _, flower = cluster
    places = {w.log.name: w.log.read_text() for w in stack.workers}
    places["flower.log"] = flower.log.read_text()
    places["atelier status"] = stack.atelier("status").stdout
    places["jobs"] = json.dumps(stack.query("SELECT * FROM jobs"))
    assert all(places.values())
    assert [where for where, text in places.items() if REDIS_PASSWORD in text] == []
