"""A worker SIGKILLed mid-job: its claim expires, another worker resumes the job
from its last completed epoch, and the run ends with exactly one row per epoch."""

import pytest

from tests.conftest import make_stack, unique
from tests.services import wait_until

pytestmark = pytest.mark.integration


def test_sigkilled_worker_job_is_taken_over(tmp_path, redis_server):
    stack = make_stack(tmp_path, redis_server.url(3))
    try:
        first = stack.start_worker(name="first@test")
        name = unique("crash")
        stack.atelier("dataset", "synth", name, "--artists", "3", "--per-artist", "10", "--size", "40")
        epochs = 12
        out = stack.json(
            "train",
            "--dataset",
            name,
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
        wait_until(
            lambda: stack.query(f"SELECT count(*) AS n FROM epoch_metrics WHERE run_id = {out['run']}")[0]["n"] >= 2,
            120,
            "the first epoch",
        )
        first.kill()
        before = {
            (r["epoch"], r["phase"]): r["created_at"]
            for r in stack.query(f"SELECT epoch, phase, created_at FROM epoch_metrics WHERE run_id = {out['run']}")
        }
        (row,) = stack.query(f"SELECT status, worker FROM jobs WHERE id = '{out['job']}'")
        assert row["status"] == "running" and row["worker"] == "first@test"

        stack.start_worker(name="second@test")
        final = stack.wait_job(out["job"])
        assert final["status"] == "succeeded", final["error"]
        assert final["attempts"] == 2
        (row,) = stack.query(f"SELECT worker FROM jobs WHERE id = '{out['job']}'")
        assert row["worker"] == "second@test"
        rows = stack.query(f"SELECT epoch, phase FROM epoch_metrics WHERE run_id = {out['run']}")
        assert len(rows) == 2 * epochs and len({(r["epoch"], r["phase"]) for r in rows}) == 2 * epochs
        # Resumed, not restarted: the epochs finished before the kill were not trained again.
        after = {
            (r["epoch"], r["phase"]): r["created_at"]
            for r in stack.query(f"SELECT epoch, phase, created_at FROM epoch_metrics WHERE run_id = {out['run']}")
        }
        assert all(after[k] == v for k, v in before.items())
        (run,) = stack.query(f"SELECT last_epoch, test_top1 FROM runs WHERE id = {out['run']}")
        assert run["last_epoch"] == epochs and run["test_top1"] is not None
    finally:
        stack.stop()
