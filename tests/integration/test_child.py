"""A worker's child outlives its jobs, and is replaced after a CUDA OOM or an unexpected error.

One worker (so every job runs in the one child it has at that moment), a real redis-server,
a real `atelier worker` process, and the simulated OOM of the fault tests.
"""

from __future__ import annotations

import pytest

from tests.conftest import make_stack
from tests.services import RedisServer

pytestmark = pytest.mark.integration

OOM_ABOVE = 8
DATASET = "child"


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory):
    root = tmp_path_factory.mktemp("child")
    redis = RedisServer(root / "redis")
    stack = make_stack(root, redis.url(0))
    stack.env["ATELIER_FAULT_OOM_ABOVE_BATCH"] = str(OOM_ABOVE)
    try:
        worker = stack.start_worker(name="only@child")
        stack.atelier("dataset", "synth", DATASET, "--artists", "2", "--per-artist", "8", "--size", "32")
        yield stack, worker
    finally:
        stack.stop()
        redis.stop()


def train(stack, batch_size: int) -> dict:
    out = stack.json(
        "train", "--dataset", DATASET, "--arch", "baseline-cnn", "--weights", "random", "--epochs", "1",
        "--image-size", "32", "--batch-size", str(batch_size), "--augment", "none",
    )  # fmt: skip
    final = stack.wait_job(out["job"])
    assert final["status"] == "succeeded", final["error"]
    (row,) = stack.query(f"SELECT worker_pid, params FROM jobs WHERE id = '{out['job']}'")
    return row


def test_consecutive_jobs_share_one_child_and_an_oom_gets_a_fresh_one(one_worker):
    stack, worker = one_worker
    first, second = train(stack, OOM_ABOVE), train(stack, OOM_ABOVE)
    assert first["worker_pid"] is not None and first["worker_pid"] != worker.proc.pid  # a child, not the parent
    assert second["worker_pid"] == first["worker_pid"]  # the child outlived the first job

    # Batch 16 > 8: the first attempt ends in (simulated) CUDA OOM in that child and is requeued at 8;
    # the retry must run in a fresh child, which then stays for the job after it.
    retried = train(stack, 2 * OOM_ABOVE)
    assert '"oom_retries"' in retried["params"]
    assert retried["worker_pid"] != first["worker_pid"]
    after = train(stack, OOM_ABOVE)
    assert after["worker_pid"] == retried["worker_pid"]
