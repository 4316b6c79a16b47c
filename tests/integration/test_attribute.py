"""Issue 31 end to end through a real worker: a stored batch answered by another classifier, the style and content
spaces and a registered embedding; asked twice, nothing new; bad attributors refused in one line, nothing written;
the comparison of two attributors on the same works."""

import json

import pytest
from safetensors.torch import save_file

from tests.conftest import unique
from tests.integration.test_stylize import TINY, wait_batch
from tests.tiny_classifier import tiny_dataset, tiny_run
from tests.tiny_embedding import weights

pytestmark = pytest.mark.integration


def decoded(value):
    return json.loads(value) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def batch(sqlite_stack, classifier):
    stack, (name, run) = sqlite_stack, classifier
    out = stack.json(
        "stylize", "--dataset", name, "--classifier", str(run), "--vgg-weights", "random", *TINY, "--dose", "0,1,10",
    )  # fmt: skip
    wait_batch(stack, out["batch"])
    return out["batch"]


def results(stack, *args) -> dict:
    return json.loads(stack.atelier("results", *args, "--format", "json").stdout)


def counts(stack) -> dict:
    return {t: stack.query(f"SELECT count(*) AS n FROM {t}")[0]["n"] for t in ("jobs", "attributors", "attributions")}


def attributions(stack, key: str) -> list[dict]:
    return stack.query(f"SELECT * FROM attributions WHERE attributor = '{key}' ORDER BY subject, subject_id")


@pytest.fixture(scope="module")
def attributed(sqlite_stack, classifier, batch, tmp_path_factory):
    """The batch answered by a second classifier, the two VGG spaces and a tiny registered embedding: (run, out)."""
    stack, (name, _) = sqlite_stack, classifier
    other = tiny_run(stack, name)
    path = tmp_path_factory.mktemp("embedding") / "tiny.safetensors"
    save_file(weights(), str(path))
    args = ["attribute", batch, "--classifier", str(other), "--style-space", "--content-space", "--embedding", "tiny"]
    out = stack.json(*args, "--factory", "tests.tiny_embedding:build", "--weights", str(path))
    wait_batch(stack, batch)
    return other, out


def test_a_stored_batch_answered_by_more_attributors_once(sqlite_stack, batch, attributed):
    stack, (other, out) = sqlite_stack, attributed
    works = stack.query(f"SELECT id, content_image_id, style_image_id FROM stylizations WHERE batch_id = '{batch}'")
    controls = stack.query("SELECT count(*) AS n FROM style_controls")[0]["n"]
    kinds = {a["kind"]: a["key"] for a in out["attributors"]}
    assert set(kinds) == {"classifier", "style-space", "content-space", "embedding"}
    assert kinds["classifier"].startswith(f"run-{other}@")
    for a in out["attributors"]:
        assert a["done"] == 0 and a["todo"] == len(works) + controls
        rows = attributions(stack, a["key"])
        assert len(rows) == a["todo"] and {r["subject"] for r in rows} == {"stylization", "control"}
        for r in rows:
            probs = decoded(r["probs"])
            assert len(probs) == 3 and sum(probs.values()) == pytest.approx(1, abs=1e-4)
            assert r["predicted"] == max(probs, key=probs.get)
            if a["kind"] != "classifier":  # the nearest centroid is the most probable
                assert r["predicted"] == min(decoded(r["distances"]), key=decoded(r["distances"]).get)
    motif = [r for r in attributions(stack, kinds["content-space"]) if r["subject"] == "stylization"]
    assert all(-1 <= r["near_content"] <= 1 and -1 <= r["near_style"] <= 1 for r in motif)
    # Asked again: every answer is reused, nothing is written (the embedding found again by its name).
    before = counts(stack)
    again = stack.json(
        "attribute", batch, "--classifier", str(other), "--style-space", "--content-space", "--embedding", "tiny"
    )
    assert [(a["key"], a["todo"], a["jobs"]) for a in again["attributors"]] == [
        (a["key"], 0, []) for a in out["attributors"]
    ]
    assert counts(stack) == before


def test_attributors_that_cannot_answer_are_refused_in_one_line_and_write_nothing(sqlite_stack, classifier, batch):
    stack, (name, run) = sqlite_stack, classifier
    elsewhere = tiny_run(stack, tiny_dataset(stack, unique("elsewhere")))
    training = stack.json("train", "--dataset", name, "--arch", "baseline-cnn", "--epochs", "50", "--image-size", "32")
    before = counts(stack)
    for args, says in (
        ([batch, "--classifier", str(elsewhere)], "another dataset"),
        ([batch, "--classifier", str(training["run"])], "has not finished training"),
        (["nosuchbatch", "--style-space"], "no style batch"),
        ([batch, "--classifier", str(run)], "own classifier"),
        ([batch], "name an attributor"),
        ([batch, "--embedding", "nobody"], "no embedding 'nobody'"),
    ):
        r = stack.atelier("attribute", *args, expect=1)
        assert says in r.output and len(r.output.strip().splitlines()) == 1, r.output
    stack.atelier("cancel", training["job"])
    assert counts(stack) == before


def test_every_table_reads_an_attributor_and_two_compare_on_the_same_works(sqlite_stack, batch, attributed, tmp_path):
    stack, (_, out) = sqlite_stack, attributed
    keys = {a["kind"]: a["key"] for a in out["attributors"]}
    listed = stack.json("results", "attributors", batch)
    assert [a["key"] for a in listed][1:] == sorted(keys.values()) and listed[0]["kind"] == "batch classifier"
    for key in keys.values():
        study = results(stack, "attribution", batch, "--attributor", key, "--condition", "none")
        assert {r["level"] for r in study["rates"]} - {None} == {0, 1, 10}
    motif = stack.atelier("results", "attribution", batch, "--attributor", "content-space", "--condition", "none")
    assert "share closer to the style image" in motif.output
    # The style space by prefix: its rows are its own answers, reshaped as the batch's.
    import analysis
    from analysis.attributors import load_attributions

    url = f"sqlite:///{stack.home / 'home' / 'atelier.db'}"
    own, styled = analysis.load_batch(url, batch), load_attributions(url, batch, "style-space")
    assert list(styled.columns[: len(own.columns)]) == list(own.columns) and len(styled) == len(own)
    rows = {r["subject_id"]: r for r in attributions(stack, keys["style-space"]) if r["subject"] == "stylization"}
    assert all(r.predicted == rows[r.stylization_id]["predicted"] for r in styled.itertuples())
    compared = results(stack, "attribution", batch, "--compare", f"own,{keys['style-space']}", "--condition", "none")
    assert [r["level"] for r in compared["compare"]] == [0, 1, 10]
    for r in compared["compare"]:
        assert (
            r["difference"] == pytest.approx(r["style_a"] - r["style_b"]) and r["attributor_b"] == keys["style-space"]
        )
    shown = stack.atelier(
        "results", "attribution", batch, "--compare", f"own,{keys['style-space']}", "--condition", "none"
    )
    assert "A − B" in shown.output and "paired" in shown.output
    d50 = stack.atelier(
        "results", "dose-response", batch, "--compare", f"own,{keys['content-space']}", "--condition", "none",
        "--plot", str(tmp_path),
    )  # fmt: skip
    assert "d50 A / d50 B" in d50.output
    assert list(tmp_path.glob("attributors-*.png"))
    # The batch's report draws one curve per attributor on one plot.
    stack.atelier("report", batch, "--out", str(tmp_path / "report"))
    assert "Every attributor on the same works" in (tmp_path / "report" / "index.html").read_text()
    assert (tmp_path / "report" / f"attributors-{batch[:8]}.png").is_file()
    # An attributor that never answered this batch shares no works with it: refused in one line.
    r = stack.atelier("results", "attribution", batch, "--compare", "own,nobody@000000000000", expect=1)
    assert "no attributor" in r.output and len(r.output.strip().splitlines()) == 1


def test_an_attributors_answers_export_in_place_of_the_classifiers(sqlite_stack, batch, attributed, tmp_path):
    import pandas as pd

    stack, (_, out) = sqlite_stack, attributed
    key = {a["kind"]: a["key"] for a in out["attributors"]}["style-space"]
    stack.atelier("results", "export", batch, "--out", str(tmp_path / "own.csv"))
    stack.atelier("results", "export", batch, "--attributor", "style-space", "--out", str(tmp_path / "style.csv"))
    own, styled = pd.read_csv(tmp_path / "own.csv"), pd.read_csv(tmp_path / "style.csv")
    answered = {(r["subject"], r["subject_id"]): r for r in attributions(stack, key)}
    assert len(styled) == len(answered) and set(styled["attributor"]) == {key}
    assert set(styled.columns) - set(own.columns) == {"attributor", "near_content", "near_style"}
    for r in styled.itertuples():
        a = answered[(r.record, r.id)]
        assert r.predicted == a["predicted"] and json.loads(r.probs) == pytest.approx(decoded(a["probs"]))
        if r.record == "stylization":
            named = {r.content_artist: "content", r.style_artist: "style"}.get(r.predicted, "other")
            assert r.outcome == ("same" if r.content_artist == r.style_artist else named)
        else:
            assert r.correct == (r.predicted == r.label)
    # The works are the batch's own, with the pair fields untouched.
    merged = styled.merge(own, on=["record", "id"], suffixes=("", "_own"))
    assert len(merged) == len(styled) and (merged["pair_hash"].fillna("") == merged["pair_hash_own"].fillna("")).all()
    r = stack.atelier("results", "export", batch, "--attributor", "nobody", expect=1)
    assert "nobody" in r.output and len(r.output.strip().splitlines()) == 1


def test_chunks_cancelled_before_they_ran_are_retried_by_the_batchs_job_control(sqlite_stack, batch, tmp_path):
    stack = sqlite_stack
    save_file(weights(seed=1), str(tmp_path / "other.safetensors"))
    args = ["--embedding", "other", "--factory", "tests.tiny_embedding:build", "--weights"]
    out = stack.json("attribute", batch, *args, str(tmp_path / "other.safetensors"), "--chunk", "2")
    stack.atelier("cancel", batch)  # the worker has at most begun the first chunk: the rest never start
    (planned,) = out["attributors"]
    assert "cancelled" in [stack.wait_job(j)["status"] for j in planned["jobs"]]
    # Asked again meanwhile, it plans what the cancelled chunks left (they are neither done nor in flight)...
    answered = len(attributions(stack, planned["key"]))
    (again,) = stack.json("attribute", batch, "--embedding", "other", "--chunk", "50")["attributors"]
    assert again["done"] == answered and again["todo"] == planned["todo"] - answered and len(again["jobs"]) == 1
    assert stack.wait_job(again["jobs"][0])["status"] == "succeeded"
    # ...and `atelier retry BATCH` runs the cancelled chunks once more (their queued messages were revoked: the
    # retry sends them under fresh task ids), rewriting the same rows.
    stack.atelier("retry", batch, "--failed")
    assert all(stack.wait_job(j)["status"] == "succeeded" for j in planned["jobs"])
    rows = attributions(stack, planned["key"])
    assert len(rows) == len({(r["subject"], r["subject_id"]) for r in rows}) == planned["todo"]


@pytest.mark.postgres
def test_on_postgresql_a_batch_is_answered_once_and_compared(pg_stack, tmp_path):
    """The same flow on a cluster's store: JSON params and specs, the upsert, the comparison."""
    stack = pg_stack
    name = tiny_dataset(stack, unique("pgattr"))
    run, other = tiny_run(stack, name), tiny_run(stack, name)
    out = stack.json(
        "stylize", "--dataset", name, "--classifier", str(run), "--vgg-weights", "random", *TINY, "--dose", "1,10",
    )  # fmt: skip
    wait_batch(stack, out["batch"])
    first = stack.json("attribute", out["batch"], "--classifier", str(other), "--style-space")
    wait_batch(stack, out["batch"])
    again = stack.json("attribute", out["batch"], "--classifier", str(other), "--style-space")
    assert [a["todo"] for a in first["attributors"]] == [a["done"] for a in again["attributors"]]
    assert all(a["todo"] == 0 and not a["jobs"] for a in again["attributors"])
    key = first["attributors"][1]["key"]
    compared = results(stack, "attribution", out["batch"], "--compare", f"own,{key}", "--condition", "none")
    assert [r["level"] for r in compared["compare"]] == [1, 10]
