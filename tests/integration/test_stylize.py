"""Style batches end to end through a real worker: matched controls, outcomes, the record, the analysis."""

import json

import pytest
from PIL import Image

from tests.report_page import read_page
from tests.services import wait_until

pytestmark = pytest.mark.integration

TINY = [
    "--per-cell",
    "1",
    "--steps",
    "3",
    "--size",
    "24",
    "--chunk",
    "4",
    "--device-batch",
    "3",
    "--optimizer",
    "adam",
    "--norm-images",
    "4",
]


def wait_batch(stack, batch):
    def ended():
        jobs = stack.query(f"SELECT status, error FROM jobs WHERE group_id = '{batch}'")
        return jobs if all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs) else None

    jobs = wait_until(ended, 240, f"style batch {batch}", interval=1)
    assert all(j["status"] == "succeeded" for j in jobs), jobs


def check_report(stack, batch: str, out, kept: list[dict]) -> None:
    """`atelier report`: every image there and decodable, one table row per dose, galleries sampled per
    outcome over pages that never repeat a work, the feature-space map from the inspect job, and every query
    it prints answers as the page does."""
    shown = stack.atelier("report", batch, "--out", str(out), "--per-outcome", "2", "--pages", "2").stdout
    assert f"wrote {out / 'index.html'}" in shown
    page = read_page(out / "index.html")
    assert page.images
    doses = {r["level"] for r in kept}
    assert page.rows["attribution"] == 1 + (1 if kept else 0) + len(doses)  # a header, the control arm, the doses
    for outcome in ("content", "style", "other"):
        n = sum(r["outcome"] == outcome for r in kept)
        assert page.figures[outcome] == min(2, n)
        works = list(page.stylized.get(outcome, []))
        for k in (1, 2):
            extra = out / f"gallery-{outcome}-{k}.html"
            assert extra.exists() == (n > 2 * k)
            if extra.exists():
                more = read_page(extra)
                assert more.figures[outcome] == min(2, n - 2 * k)
                works += more.stylized.get(outcome, [])
        assert len(works) == len(set(works)) == min(n, 6)  # no work on two pages
    assert (out / f"map-{batch[:8]}.png").is_file() and "not computed" not in (out / "index.html").read_text()
    counts, pairs = page.queries
    assert sum(r["n"] for r in stack.query(counts)) == len(kept) == len(stack.query(pairs))


def test_a_batch_with_null_doses_matched_controls_and_same_artist_pairs(sqlite_stack, classifier, tmp_path):
    stack, (name, run) = sqlite_stack, classifier
    predictions = stack.query(
        f"SELECT image_id, predicted, top3 FROM predictions WHERE run_id = {run} ORDER BY image_id"
    )
    # init content and beta 0: the optimisation has nothing to do, so the stylized work is its content image.
    args = [
        "stylize",
        "--dataset",
        name,
        "--classifier",
        str(run),
        "--pairs",
        "all",
        "--style-weight",
        "0,1e2",
        "--init",
        "content",
        "--vgg-weights",
        "random",
        *TINY,
    ]
    out = stack.json(*args)
    assert (out["pairs"], out["jobs"]) == (3 * 3 * 2, 5)  # 3 x 3 artist cells (same-artist too) x 2 doses
    wait_batch(stack, out["batch"])

    rows = stack.query(f"SELECT * FROM attribution_pairs WHERE batch_id = '{out['batch']}'")
    assert len(rows) == 18 and len({r["pair_hash"] for r in rows}) == 18
    controls = {c["image_id"]: c for c in stack.query(f"SELECT * FROM style_controls WHERE classifier_run_id = {run}")}
    artifacts = stack.home / "home" / "artifacts"
    for r in rows:
        # The full record of how the picture was made, and the outcome it earned.
        assert (r["init"], r["pool"], r["loss"], r["vgg_weights"], r["vgg_weights_sha256"]) == (
            "content",
            "avg",
            "gatys",
            "random",
            None,
        )
        assert r["steps"] == 3 and r["size"] == 24 and len(r["vgg_norm"]) == 32 and isinstance(r["seed"], int)
        same = r["content_artist"] == r["style_artist"]
        expected = (
            "same"
            if same
            else "content"
            if r["predicted"] == r["content_artist"]
            else "style"
            if r["predicted"] == r["style_artist"]
            else "other"
        )
        assert r["outcome"] == expected
        assert r["content_correct"] is not None and r["style_correct"] is not None  # both controls exist
        if r["style_weight"] == 0:
            # A null stylization and its control: identical pixels, identical answer.
            control = controls[r["content_image_id"]]
            with Image.open(artifacts / r["image_path"]) as a, Image.open(artifacts / control["image_path"]) as b:
                assert a.size == b.size and a.tobytes() == b.tobytes()
            assert r["predicted"] == control["predicted"]
            assert r["loss_ratio"] == 0
    # The batch never touches the classifier run's own test predictions.
    assert (
        stack.query(f"SELECT image_id, predicted, top3 FROM predictions WHERE run_id = {run} ORDER BY image_id")
        == predictions
    )

    # Same-artist pairs reach no aggregate: neither the views nor the command.
    kept = [r for r in rows if r["outcome"] != "same" and r["content_correct"] and r["style_correct"]]
    view = stack.query(f"SELECT sum(n) AS n FROM attribution_by_weight WHERE batch_id = '{out['batch']}'")
    assert (view[0]["n"] or 0) == len(kept)
    by_pair = stack.query(
        f"SELECT style_artist, content_artist FROM attribution_by_pair WHERE batch_id = '{out['batch']}'"
    )
    assert all(p["style_artist"] != p["content_artist"] for p in by_pair)
    found = json.loads(
        stack.atelier("results", "attribution", out["batch"], "--condition", "none", "--format", "json").stdout
    )
    table = [t for t in found["rates"] if t["treatment"] != "control"]
    assert {t["level"] for t in table} == {r["level"] for r in rows}  # doses are strata
    assert sum(t["n"] for t in table) == 12  # the 6 same-artist stylizations are left out
    for t in table:
        assert sum(t[f"{o}_count"] for o in ("content", "style", "other")) == t["n"]
        assert t["pairs"] == 6
        assert t["style_low"] is None or t["style_low"] <= t["style_rate"] <= t["style_high"]
    assert all(b["chance_uniform"] == pytest.approx(1 / 3) for b in found["baselines"])

    text = stack.atelier("results", "attribution", out["batch"], "--plot", str(tmp_path)).stdout
    assert "uniform chance" in text and "jackknife over images" in text and "random init" in text
    assert "same-artist" in text and "attribution_pairs" in text
    assert len(list(tmp_path.glob("attribution-*.png"))) == 3

    check_report(stack, out["batch"], tmp_path / "report", kept)

    again = stack.json(*args)
    assert (again["pairs"], again["jobs"]) == (18, 0)  # identical requests reuse every stylization


def test_stylize_without_weights_fails_at_submit_and_writes_nothing(sqlite_stack, classifier):
    stack, (name, run) = sqlite_stack, classifier
    before = (
        stack.query("SELECT count(*) AS n FROM style_batches")[0]["n"],
        stack.query("SELECT count(*) AS n FROM jobs")[0]["n"],
    )
    r = stack.atelier("stylize", "--dataset", name, "--classifier", str(run), *TINY, expect=1)  # --vgg-weights imagenet
    assert len(r.output.strip().splitlines()) == 1 and "weights import" in r.output and "Traceback" not in r.output
    after = (
        stack.query("SELECT count(*) AS n FROM style_batches")[0]["n"],
        stack.query("SELECT count(*) AS n FROM jobs")[0]["n"],
    )
    assert after == before


def test_a_grid_cell_classifies_as_it_was_evaluated(sqlite_stack, classifier):
    """A feature-extract cell is a full classifier for a style batch, and answers exactly as in its test."""
    stack, (name, _) = sqlite_stack, classifier
    sweep = stack.json(
        "grid",
        "--dataset",
        name,
        "--arch",
        "baseline-cnn",
        "--image-size",
        "32",
        "--head",
        "gap",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
    )
    wait_batch(stack, sweep["sweep"])  # a sweep's jobs share its group id as a batch's do
    (cell,) = stack.query(f"SELECT run_id FROM grid_leaderboard WHERE sweep_id = '{sweep['sweep']}'")
    run = cell["run_id"]

    import torch
    from sqlalchemy import select

    from core.settings import Settings
    from corpus.imageio import open_rgb
    from db.engine import make_engine, make_sessionmaker
    from db.models import Dataset, Prediction, Run
    from db.models import Image as ImageRow
    from worker.residents import load_classifier

    settings = Settings.from_env(stack.env)
    sessions = make_sessionmaker(make_engine(settings.database_url))
    with sessions() as s:
        row = s.get(Run, run)
        ds = s.get(Dataset, row.dataset_id)
        classify = load_classifier(s, row, list(ds.classes), settings.artifacts, torch.device("cpu"))
        stored = {p.image_id: p for p in s.scalars(select(Prediction).where(Prediction.run_id == run))}
        paths = {i.id: i.path for i in s.scalars(select(ImageRow).where(ImageRow.id.in_(stored)))}
        root = ds.root
    answers = classify([open_rgb(f"{root}/{paths[i]}") for i in sorted(stored)])
    for i, answer in zip(sorted(stored), answers):
        assert answer[0][0] == stored[i].predicted
        assert answer[0][1] == pytest.approx(stored[i].top3[0][1], abs=1e-5)

    out = stack.json(
        "stylize",
        "--dataset",
        name,
        "--classifier",
        str(run),
        "--style-weight",
        "1e2",
        "--vgg-weights",
        "random",
        *TINY,
    )
    wait_batch(stack, out["batch"])
    assert len(stack.query(f"SELECT * FROM attribution_pairs WHERE batch_id = '{out['batch']}'")) == out["pairs"] == 6
