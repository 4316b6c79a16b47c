"""Issue 20 end to end through a real worker: doses, the pinned classifier, probabilities, answers on the way."""

import json
import os
import stat

import pytest

from tests.integration.test_stylize import TINY, wait_batch

pytestmark = pytest.mark.integration


def decoded(value):
    """A JSON column as `atelier query` returns it (text on SQLite)."""
    return json.loads(value) if isinstance(value, str) else value


def stylize(stack, name, run, *extra):
    return stack.json(
        "stylize", "--dataset", name, "--classifier", str(run), "--vgg-weights", "random",
        *TINY, "--steps", "4", *extra,
    )  # fmt: skip


def test_a_dose_batch_records_its_dose_beta_balance_checkpoint_and_probabilities(sqlite_stack, classifier):
    stack, (name, run) = sqlite_stack, classifier
    out = stylize(stack, name, run, "--dose", "0,1")
    wait_batch(stack, out["batch"])
    rows = stack.query(f"SELECT * FROM attribution_pairs WHERE batch_id = '{out['batch']}'")
    assert len(rows) == 12 and {r["treatment"] for r in rows} == {"dose"} and {r["level"] for r in rows} == {0, 1}
    (sha,) = {r["checkpoint_sha256"] for r in rows}
    assert len(sha) == 64
    full = {s["pair_hash"]: s for s in stack.query(f"SELECT * FROM stylizations WHERE batch_id = '{out['batch']}'")}
    by_pair: dict[tuple, dict] = {}
    for r in rows:
        s = full[r["pair_hash"]]
        assert r["dose"] == r["level"]
        # The balance is the dose's target (β set from the same reference losses), recorded as such, not evidence;
        # what the dose did not set is the achieved loss ratio, checked below.
        assert r["balance"] == pytest.approx(r["dose"], rel=1e-4)
        assert (r["style_weight"] == 0) == (r["dose"] == 0)
        probs, answers = decoded(s["probs"]), decoded(s["answers"])
        assert {r["content_artist"], r["style_artist"]} <= set(probs) and len(probs) == 3
        assert sum(probs.values()) == pytest.approx(1, abs=1e-4)
        assert r["p_content"] == pytest.approx(probs[r["content_artist"]], abs=1e-5)
        assert r["p_style"] == pytest.approx(probs[r["style_artist"]], abs=1e-5)
        assert max(probs, key=probs.get) == r["predicted"]
        assert [a[0] for a in answers] == [1, 2, 4]  # after 1/4, 1/2 and all of the 4 steps
        assert answers[-1][1] == r["predicted"] and answers[1][1] == r["predicted_half"]
        assert (s["precision"], s["device"]) == ("fp32", "cpu")
        by_pair.setdefault((r["content_image_id"], r["style_image_id"]), {})[r["dose"]] = r["style_weight"]
    # One dose, other betas: each pair's beta comes from its own loss scales.
    assert len({round(betas[1], 6) for betas in by_pair.values()}) > 1
    # ...and another achieved loss ratio: the dose fixes the start's balance, not where each pair ends.
    achieved = [r["loss_ratio"] for r in rows if r["dose"] == 1]
    assert all(v is not None and v > 0 for v in achieved) and len({round(v, 6) for v in achieved}) > 1
    controls = stack.query(f"SELECT * FROM style_controls WHERE classifier_run_id = {run}")
    assert controls and {c["checkpoint_sha256"] for c in controls} == {sha}
    assert all(sum(decoded(c["probs"]).values()) == pytest.approx(1, abs=1e-4) for c in controls)


def test_raw_betas_stay_for_the_paper_and_never_share_a_stratum_with_doses(sqlite_stack, classifier):
    stack, (name, run) = sqlite_stack, classifier
    out = stylize(stack, name, run, "--style-weight", "1")
    wait_batch(stack, out["batch"])
    rows = stack.query(f"SELECT * FROM attribution_pairs WHERE batch_id = '{out['batch']}'")
    assert {r["treatment"] for r in rows} == {"beta"} and all(r["dose"] is None for r in rows)
    assert all(r["style_weight"] == 1 and r["balance"] > 0 for r in rows)


def test_refusals_are_one_line_and_write_nothing(sqlite_stack, classifier):
    stack, (name, run) = sqlite_stack, classifier
    before = stack.query("SELECT count(*) AS n FROM jobs")[0]["n"]
    base = ["stylize", "--dataset", name, "--classifier", str(run), "--vgg-weights", "random", *TINY]
    for extra, says in (
        (["--dose", "1", "--style-weight", "1"], "not both"),
        (["--dose", "-1"], "non-negative"),
        (["--dose", "nan"], ""),
    ):
        r = stack.atelier(*base, *extra, expect=None)
        assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and says in r.output, r.output
        assert "Traceback" not in r.output
    # A classifier still training may change its checkpoint: refused.
    job = stack.json("train", "--dataset", name, "--arch", "baseline-cnn", "--epochs", "50", "--image-size", "32")
    r = stack.atelier("stylize", "--dataset", name, "--classifier", str(job["run"]), *TINY[:2], expect=1)
    assert "has not finished training" in r.output and len(r.output.strip().splitlines()) == 1
    stack.atelier("cancel", job["job"])
    assert stack.query("SELECT count(*) AS n FROM jobs")[0]["n"] == before + 1  # only the training job


def test_the_embedded_home_and_store_are_private(sqlite_stack):
    home = sqlite_stack.home / "home"
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(home / "atelier.db").st_mode) == 0o600
