"""Stopping on the record, end to end through a real worker: every stylization stores the steps it took and why
it stopped, and the attribution table counts, per stratum, those that did not run their steps."""

import json

import pytest

from tests.integration.test_stylize import TINY, wait_batch
from worker.ml.style import STOP_REASONS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("optimizer", ["lbfgs", "lbfgs-onepass"])
def test_every_stylization_stores_its_steps_and_stop_and_the_table_counts_the_early_ones(
    sqlite_stack, classifier, optimizer
):
    stack, (name, run) = sqlite_stack, classifier
    out = stack.json(
        "stylize", "--dataset", name, "--classifier", str(run), "--vgg-weights", "random", *TINY,
        "--steps", "4", "--optimizer", optimizer, "--dose", "0,1",
    )  # fmt: skip
    wait_batch(stack, out["batch"])
    rows = stack.query(f"SELECT * FROM stylizations WHERE batch_id = '{out['batch']}'")
    assert len(rows) == 12
    for r in rows:
        assert r["optimizer"] == optimizer and r["stop_reason"] in STOP_REASONS
        assert 1 <= r["steps_done"] <= r["steps"] == 4
        assert r["stop_reason"] != "steps done" or r["steps_done"] == 4  # a pair that ran its steps ran them all
    found = json.loads(
        stack.atelier("results", "attribution", out["batch"], "--condition", "none", "--format", "json").stdout
    )
    views = stack.query(f"SELECT pair_hash, level, outcome FROM attribution_pairs WHERE batch_id = '{out['batch']}'")
    by_hash = {r["pair_hash"]: r for r in rows}
    for t in found["rates"]:
        if t["treatment"] == "control":
            assert t["stopped_early"] == 0
            continue
        stratum = [by_hash[v["pair_hash"]] for v in views if v["level"] == t["level"] and v["outcome"] != "same"]
        assert t["stopped_early"] == sum(r["steps_done"] < r["steps"] for r in stratum)
    assert "stopped early" in stack.atelier("results", "attribution", out["batch"]).stdout
