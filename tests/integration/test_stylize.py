"""A tiny style batch end to end through a real worker: rows, PNGs, outcomes, attribution."""

import json

import pytest

from tests.conftest import unique
from tests.services import wait_until

pytestmark = pytest.mark.integration


def test_style_batch_rows_pngs_and_attribution(sqlite_stack, tmp_path):
    stack = sqlite_stack
    name = unique("style")
    stack.atelier("dataset", "synth", name, "--artists", "3", "--per-artist", "9", "--size", "40")
    run = stack.json("train", "--dataset", name, "--arch", "baseline-cnn", "--epochs", "2", "--image-size", "32",
                     "--lr", "1e-3", "--batch-size", "8")
    assert stack.wait_job(run["job"])["status"] == "succeeded"

    args = ["stylize", "--dataset", name, "--classifier", str(run["run"]), "--per-cell", "1", "--style-weight", "1e2,1e4",
            "--steps", "3", "--size", "24", "--chunk", "4", "--device-batch", "3", "--optimizer", "adam"]
    out = stack.json(*args)
    assert (out["pairs"], out["jobs"]) == (3 * 2 * 2, 3)
    wait_until(lambda: all(r["status"] == "succeeded" for r in stack.query(
        f"SELECT status FROM jobs WHERE group_id = '{out['batch']}'")) or None, 240, "style batch", interval=1)

    progress = stack.json("status", out["batch"])
    assert (progress["batch"], progress["succeeded"], progress["pairs_done"], progress["pairs"]) == (out["batch"], 3, 12, 12)
    rows = stack.query(f"SELECT * FROM attribution_pairs WHERE batch_id = '{out['batch']}'")
    assert len(rows) == 12 and len({r["pair_hash"] for r in rows}) == 12
    for r in rows:
        assert (stack.home / "home" / "artifacts" / r["image_path"]).is_file()
        assert r["content_artist"] != r["style_artist"]
        expected = "content" if r["predicted"] == r["content_artist"] else "style" if r["predicted"] == r["style_artist"] else "other"
        assert r["outcome"] == expected
        assert r["content_correct"] is not None  # the unstylized content image was classified too

    table = json.loads(stack.atelier("results", "attribution", out["batch"], "--all-pairs", "--format", "json").stdout)
    assert sum(t["n"] for t in table) == 12 and {t["style weight"] for t in table} == {100.0, 10000.0}
    for t in table:
        assert t["content"] + t["style"] + t["other"] == t["n"]
    by_pair = json.loads(stack.atelier("results", "attribution", out["batch"], "--all-pairs", "--by", "pair",
                                       "--format", "json", "--plot", str(tmp_path)).stdout.splitlines()[0])
    assert len(by_pair) == 6
    assert len(list(tmp_path.glob("attribution-*.png"))) == 3
    view = stack.query(f"SELECT sum(n) AS n FROM attribution_by_weight WHERE batch_id = '{out['batch']}'")
    correct = sum(bool(r["content_correct"]) for r in rows)
    assert (view[0]["n"] or 0) == correct

    again = stack.json(*args)
    assert (again["pairs"], again["jobs"]) == (12, 0)
    assert len(stack.query(f"SELECT * FROM attribution_pairs WHERE batch_id = '{again['batch']}'")) == 12
