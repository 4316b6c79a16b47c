"""Faults a cluster survives, each against real processes: CUDA OOM, a job that raises,
a frozen worker, and a Redis that comes back empty in the middle of a sweep.

One private Redis (so it can be restarted) and two workers for the module; the
workers simulate CUDA running out of memory above 8 samples per training batch.
"""

import json
import sqlite3
import time

import pytest
from sqlalchemy import text

from db.engine import make_engine
from tests.conftest import make_stack
from tests.services import RedisServer, wait_until

pytestmark = pytest.mark.integration

OOM_ABOVE = 8
DATASET = "faults"
FINISHED = ("succeeded", "failed", "cancelled")
cluster_state: dict = {}  # the OOM test's classifier run, reused by the style batch test


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    redis = RedisServer(root / "redis")
    stack = make_stack(root, redis.url(0))
    stack.env["ATELIER_FAULT_OOM_ABOVE_BATCH"] = str(OOM_ABOVE)
    try:
        stack.start_worker(name="a@faults")
        stack.start_worker(name="b@faults")
        stack.atelier("dataset", "synth", DATASET, "--artists", "3", "--per-artist", "12", "--size", "40")
        yield stack, redis
    finally:
        stack.stop()
        redis.stop()


def store(stack):
    """A read-write connection to the stack's store, for the test to play a corrupted row."""
    return make_engine(f"sqlite:///{stack.home / 'home' / 'atelier.db'}")


def freeze_between_transactions(stack, worker, tries: int = 20) -> None:
    """SIGSTOP ``worker`` at a moment it holds no lock on the SQLite store.

    A box frozen inside a write transaction blocks every writer of an SQLite file (and a
    reader that finds the WAL index half-written) until it wakes: that is SQLite's design,
    not a fault atelier can survive, and it made this test fail now and then on a busy
    machine. Writes last milliseconds, so a freeze that caught one is undone and retried.
    """
    path = stack.home / "home" / "atelier.db"
    for _ in range(tries):
        worker.pause()
        probe = sqlite3.connect(f"file:{path}", uri=True, timeout=2.0)
        try:
            probe.execute("BEGIN IMMEDIATE")  # the lock a writer needs: free unless the frozen worker holds it
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            worker.resume()
            time.sleep(0.1)
        finally:
            probe.close()
    raise AssertionError(f"could not freeze {worker.name} outside a write transaction in {tries} tries")


def group_jobs(stack, group):
    return stack.query(
        f"SELECT id, kind, status, error, attempts, finished_at, params FROM jobs "
        f"WHERE group_id = '{group}' ORDER BY created_at"
    )


def wait_group(stack, group, timeout=240):
    return wait_until(
        lambda: (rows := group_jobs(stack, group)) and all(r["status"] in FINISHED for r in rows) and rows,
        timeout,
        f"group {group}",
        interval=0.5,
    )


def grid(stack, dense1, epochs=1):
    return stack.json(
        "grid",
        "--dataset",
        DATASET,
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--image-size",
        "32",
        "--mode",
        "feature-extract",
        "--dense1",
        dense1,
        "--epochs",
        str(epochs),
        "--batch-size",
        str(OOM_ABOVE),
        "--augment",
        "none",
    )


def test_cuda_oom_retries_with_half_the_batch(cluster):
    stack, _ = cluster
    out = stack.json(
        "train",
        "--dataset",
        DATASET,
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "32",
        "--augment",
        "none",
    )
    final = stack.wait_job(out["job"])
    assert final["status"] == "succeeded", final["error"]
    (job,) = stack.query(f"SELECT params, attempts, max_attempts FROM jobs WHERE id = '{out['job']}'")
    params = json.loads(job["params"])
    assert params["config"]["batch_size"] == OOM_ABOVE
    assert [r["batch_size"] for r in params["oom_retries"]] == [32, 16]
    assert all("out of memory" in r["error"] for r in params["oom_retries"])
    # Two OOM retries did not spend the job's attempts: it still had all of them for real failures.
    assert job["attempts"] == 3 and job["max_attempts"] == 3 + 2
    (run,) = stack.query(f"SELECT config, last_epoch FROM runs WHERE id = {out['run']}")
    assert json.loads(run["config"])["batch_size"] == OOM_ABOVE and run["last_epoch"] == 2
    cluster_state["classifier"] = out["run"]


def test_style_batch_oom_halves_the_device_batch(cluster, tmp_path):
    stack, _ = cluster
    if "classifier" not in cluster_state:
        pytest.fail("needs the classifier trained by the OOM test above")
    # One content image with ten styles: pairs of one shape share a device batch (10 > the OOM limit).
    paths = [
        r["path"]
        for r in stack.query(
            "SELECT i.path FROM images i JOIN datasets d ON d.id = i.dataset_id "
            f"WHERE d.name = '{DATASET}' ORDER BY i.id LIMIT 11"
        )
    ]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("content,style\n" + "".join(f"{paths[0]},{style}\n" for style in paths[1:]))
    out = stack.json(
        "stylize",
        "--dataset",
        DATASET,
        "--classifier",
        str(cluster_state["classifier"]),
        "--pairs",
        str(pairs),
        "--style-weight",
        "1e3",
        "--steps",
        "2",
        "--size",
        "24",
        "--chunk",
        "12",
        "--device-batch",
        "12",
        "--optimizer",
        "adam",
        "--vgg-weights",
        "random",
    )
    assert (out["pairs"], out["jobs"]) == (10, 1)
    (job,) = wait_group(stack, out["batch"])
    assert job["status"] == "succeeded", job["error"]
    params = json.loads(job["params"])
    assert params["device_batch"] == 6 and [r["batch_size"] for r in params["oom_retries"]] == [12]
    assert stack.query(f"SELECT count(*) AS n FROM stylizations WHERE batch_id = '{out['batch']}'")[0]["n"] == 10


def test_a_cell_that_raises_fails_alone_and_retries_alone(cluster):
    stack, _ = cluster
    for w in stack.workers:  # hold the workers so the row can be corrupted before any cell runs
        w.pause()
    try:
        out = grid(stack, "4:4:16")
        cells = [r for r in group_jobs(stack, out["sweep"]) if r["kind"] == "train"]
        victim = cells[1]
        good_features = json.loads(victim["params"])["features"]
        with store(stack).begin() as db:
            db.execute(
                text(
                    "UPDATE jobs SET params = json_set(params, '$.features', 'features/missing.safetensors') "
                    "WHERE id = :id"
                ),
                {"id": victim["id"]},
            )
    finally:
        for w in stack.workers:
            w.resume()

    rows = {r["id"]: r for r in wait_group(stack, out["sweep"])}
    assert rows[victim["id"]]["status"] == "failed"
    assert "No such file" in rows[victim["id"]]["error"] or "not found" in rows[victim["id"]]["error"].lower()
    others = [r for r in rows.values() if r["id"] != victim["id"]]
    assert len(others) == 4 and all(r["status"] == "succeeded" for r in others)  # the features job + 3 cells

    with store(stack).begin() as db:  # the researcher fixes the cause ...
        db.execute(
            text("UPDATE jobs SET params = json_set(params, '$.features', :f) WHERE id = :id"),
            {"f": good_features, "id": victim["id"]},
        )
    assert stack.atelier("retry", out["sweep"], "--failed").stdout.strip().endswith("re-queued 1 job(s)")
    after = {r["id"]: r for r in wait_group(stack, out["sweep"])}
    assert after[victim["id"]]["status"] == "succeeded"
    assert all(after[r["id"]]["finished_at"] == r["finished_at"] for r in others)  # ... and only that cell ran again
    metrics = stack.query(
        "SELECT c.run_id, count(m.epoch) AS n FROM sweep_cells c LEFT JOIN epoch_metrics m "
        f"ON m.run_id = c.run_id WHERE c.sweep_id = '{out['sweep']}' GROUP BY c.run_id"
    )
    assert len(metrics) == 4 and all(m["n"] == 2 for m in metrics)  # one train + one val row each


def test_a_frozen_worker_loses_its_job_and_its_late_writes_are_refused(cluster):
    stack, _ = cluster
    epochs = 30
    out = stack.json(
        "train",
        "--dataset",
        DATASET,
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--epochs",
        str(epochs),
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--augment",
        "none",
    )
    count = f"SELECT count(*) AS n FROM epoch_metrics WHERE run_id = {out['run']}"
    wait_until(lambda: stack.query(count)[0]["n"] >= 4, 120, "two epochs")
    (row,) = stack.query(f"SELECT worker FROM jobs WHERE id = '{out['job']}'")
    frozen = next(w for w in stack.workers if row["worker"] == w.name)
    other = next(w for w in stack.workers if w is not frozen)
    freeze_between_transactions(stack, frozen)
    try:
        wait_until(
            lambda: stack.query(f"SELECT worker FROM jobs WHERE id = '{out['job']}'")[0]["worker"] == other.name,
            60,
            "the other worker to take the job over",
        )
    finally:
        frozen.resume()
    # Woken up, the first worker tries to go on writing epochs: refused, it stops.
    wait_until(lambda: "stopped: lost" in frozen.log.read_text(), 60, "the frozen worker to give up")
    final = stack.wait_job(out["job"])
    assert final["status"] == "succeeded" and final["attempts"] == 2
    (run,) = stack.query(f"SELECT last_epoch FROM runs WHERE id = {out['run']}")
    rows = stack.query(f"SELECT epoch, phase FROM epoch_metrics WHERE run_id = {out['run']}")
    # Every epoch exactly once, none skipped, however the freeze fell (early stopping may end it before 30).
    expected = {(e, phase) for e in range(1, run["last_epoch"] + 1) for phase in ("train", "val")}
    assert len(rows) == len(expected) and {(r["epoch"], r["phase"]) for r in rows} == expected
    assert frozen.alive() and other.alive()


def test_redis_restarted_empty_mid_sweep_then_resume_runs_every_cell_once(cluster):
    stack, redis = cluster
    out = grid(stack, "4:4:48", epochs=2)  # 12 cells
    sweep = out["sweep"]

    def some_done_some_queued():
        rows = group_jobs(stack, sweep)
        done = sum(r["status"] == "succeeded" and r["kind"] == "train" for r in rows)
        queued = sum(r["status"] == "queued" for r in rows)
        return done >= 1 and queued >= 4

    wait_until(some_done_some_queued, 180, "the sweep to be under way")
    redis.restart_empty()  # every queued message is gone
    stack.atelier("resume")
    rows = wait_group(stack, sweep, timeout=300)
    # 12 cells (their features were cached by the sweep above, so no features job this time)
    assert sum(r["kind"] == "train" for r in rows) == 12
    assert all(r["status"] == "succeeded" for r in rows), [r["error"] for r in rows]
    assert all(r["attempts"] == 1 for r in rows)  # nothing ran twice
    metrics = stack.query(
        "SELECT c.cell_index, count(m.epoch) AS n FROM sweep_cells c JOIN epoch_metrics m "
        f"ON m.run_id = c.run_id WHERE c.sweep_id = '{sweep}' GROUP BY c.cell_index"
    )
    assert sorted(m["cell_index"] for m in metrics) == list(range(12)) and all(m["n"] == 4 for m in metrics)
    assert all(w.alive() for w in stack.workers)
