"""Cancel and retry against a real worker."""

import pytest

from tests.conftest import unique
from tests.services import wait_until

pytestmark = pytest.mark.integration


def test_cancel_stops_a_running_job_at_the_next_epoch(sqlite_stack):
    stack = sqlite_stack
    name = unique("cancel")
    stack.atelier("dataset", "synth", name, "--artists", "3", "--per-artist", "10", "--size", "40")
    out = stack.json(
        "train",
        "--dataset",
        name,
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--epochs",
        "200",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--augment",
        "none",
    )
    count = f"SELECT count(*) AS n FROM epoch_metrics WHERE run_id = {out['run']}"
    wait_until(lambda: stack.query(count)[0]["n"] >= 2, 120, "the first epoch")
    assert "cancelled 1 job" in stack.atelier("cancel", out["job"]).stdout
    n = stack.query(count)[0]["n"]
    import time

    time.sleep(4)  # long enough for several more epochs had it kept running
    assert stack.query(count)[0]["n"] <= n + 2  # at most the epoch in flight was written
    (row,) = stack.query(f"SELECT status FROM jobs WHERE id = '{out['job']}'")
    assert row["status"] == "cancelled"


def test_failed_cells_retry_alone(sqlite_stack):
    stack = sqlite_stack
    name = unique("retry")
    stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "6", "--size", "32")
    # Imported weights whose file changes after the import: the worker's sha256 check fails the features job,
    # and its cells with it (the submit only sees that the file is there).
    import torch
    from safetensors.torch import save_file

    from worker.ml.backbones import build_backbone

    save_file(
        {k: v.contiguous() for k, v in build_backbone("resnet18").state_dict().items()},
        str(stack.home / f"{name}.safetensors"),
    )
    weights = stack.json(
        "weights", "import", str(stack.home / f"{name}.safetensors"), "--arch", "resnet18", "--name", name
    )
    stored = stack.home / "home" / "artifacts" / weights["path"]
    save_file({"x": torch.zeros(1)}, str(stored))
    out = stack.json(
        "grid",
        "--dataset",
        name,
        "--arch",
        "resnet18",
        "--image-size",
        "32",
        "--dense1",
        "8,16",
        "--epochs",
        "1",
        "--weights",
        name,
    )
    group = f"SELECT kind, status, error, attempts FROM jobs WHERE group_id = '{out['sweep']}'"
    rows = wait_until(
        lambda: (r := stack.query(group)) and all(x["status"] == "failed" for x in r) and r, 120, "failures"
    )
    assert {r["kind"] for r in rows} == {"features", "train"} and len(rows) == 3
    assert any("not the recorded" in (r["error"] or "") for r in rows)
    assert stack.atelier("retry", out["sweep"], "--failed").stdout.strip().endswith("re-queued 3 job(s)")
    rows = wait_until(
        lambda: (
            (r := stack.query(group))
            and all(x["status"] == "failed" for x in r)
            and all(x["attempts"] <= 1 for x in r)
            and r
        ),
        120,
        "failures again",
    )
    assert len(rows) == 3
    assert "failed 3" in stack.atelier("status", out["sweep"], "--watch").stdout  # --watch returns once all ended


def test_cancel_revokes_queued_messages(sqlite_stack):
    stack = sqlite_stack
    name = unique("revoke")
    stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "6", "--size", "32")
    out = stack.json(
        "grid",
        "--dataset",
        name,
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--image-size",
        "32",
        "--dense1",
        "4,8,12",
        "--epochs",
        "1",
    )
    before = stack.workers[0].log.read_text()
    assert "cancelled" in stack.atelier("cancel", out["sweep"]).stdout
    rows = stack.query(f"SELECT status FROM jobs WHERE group_id = '{out['sweep']}'")
    assert len(rows) == 4 and all(r["status"] in ("cancelled", "succeeded") for r in rows)
    if any(r["status"] == "cancelled" for r in rows):  # (unless the worker finished everything first)
        wait_until(lambda: "flagged as revoked" in stack.workers[0].log.read_text()[len(before) :], 30, "the revoke")
