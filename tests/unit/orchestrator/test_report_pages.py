"""`atelier report`: the pure pieces (per-class scores, the heatmap's axes, the gallery pager, the plots from an
inspect job's map) and the pages built from a small SQLite store with a fabricated inspection: valid HTML, the
table rows the browser tests count, every picture beside the page, and one-line errors that write nothing."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image as PILImage
from sqlalchemy import text

import analysis
from core.errors import ConfigError
from core.settings import Settings
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import Dataset, EpochMetric, Image, Job, Prediction, Run, StyleBatch, StyleControl, Sweep, SweepCell
from orchestrator.jobs.lookups import find_group, find_job, find_report_target, find_sweep
from orchestrator.reports import batch_page, page, run_page, sweep_page
from orchestrator.reports.confusion import per_class_scores, row_normalised
from tests.cli_run import assert_clean_exit, invoke
from tests.conftest import backend_env
from tests.report_page import read_page
from tests.unit.orchestrator.test_results_attribution import SHA, STYLE, add_batch

ARTISTS = ["Bosch", "Cézanne", "Monet", "Vermeer"]
# rows: true artist, columns: named artist (Vermeer has no test image; nobody is ever named Monet)
CONFUSION = [[3, 1, 0, 0], [1, 2, 0, 1], [2, 0, 0, 0], [0, 0, 0, 0]]


# ---------------------------------------------------------------- per-class scores


def test_per_class_scores_by_hand():
    bosch, cezanne, monet, vermeer = per_class_scores(CONFUSION)
    # Bosch: 3 of 4 right; named Bosch 6 times (3 + 1 Cézanne + 2 Monet)
    assert (bosch.support, bosch.predicted, bosch.correct) == (4, 6, 3)
    assert (bosch.precision, bosch.recall) == pytest.approx((3 / 6, 3 / 4))
    assert bosch.f1 == pytest.approx(2 * 0.5 * 0.75 / (0.5 + 0.75))
    assert (cezanne.precision, cezanne.recall, cezanne.f1) == pytest.approx((2 / 3, 2 / 4, 2 * 2 / (4 + 3)))
    # Monet is never named: no precision to speak of, counted as 0 (as torchmetrics and scikit-learn do)
    assert (monet.predicted, monet.precision, monet.recall, monet.f1) == (0, 0.0, 0.0, 0.0)
    # Vermeer has no test image but is named once: recall 0 by convention, precision 0 (0 of 1 right)
    assert (vermeer.support, vermeer.predicted, vermeer.precision, vermeer.recall, vermeer.f1) == (0, 1, 0, 0, 0)


def test_per_class_scores_of_an_empty_matrix_and_bad_shapes():
    assert [s.f1 for s in per_class_scores([[0, 0], [0, 0]])] == [0.0, 0.0]
    assert [s.f1 for s in per_class_scores([[5, 0], [0, 7]])] == [1.0, 1.0]
    with pytest.raises(ValueError, match="square"):
        per_class_scores([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="negative"):
        per_class_scores([[1, -1], [0, 1]])


def test_rows_normalised_sum_to_one_or_stay_empty():
    m = row_normalised(CONFUSION)
    assert m[0].tolist() == [0.75, 0.25, 0.0, 0.0]
    assert [round(r.sum(), 9) for r in m] == [1.0, 1.0, 1.0, 0.0]


# ---------------------------------------------------------------- sweep heatmap axes


CELLS = [
    {"lr": lr, "dense1": d1, "dense2": d2, "augment": "none"}
    for lr in (1e-3, 1e-4)
    for d1 in (128, 192, 256)
    for d2 in (32, 64, 96, 128)
]


def test_default_axes_are_the_two_varying_parameters_with_the_most_values():
    assert sweep_page.choose_axes(CELLS, None) == ("dense2", "dense1")
    # a tie keeps the order the parameters are first seen in
    tie = [{"a": a, "b": b, "c": 0} for a in (1, 2) for b in (1, 2)]
    assert sweep_page.choose_axes(tie, None) == ("a", "b")
    assert sweep_page.choose_axes([{"lr": 1, "x": 0}, {"lr": 2, "x": 0}], None) is None  # one varies
    assert sweep_page.choose_axes([], None) is None


def test_asked_axes_must_vary():
    assert sweep_page.choose_axes(CELLS, ("lr", "dense1")) == ("lr", "dense1")
    with pytest.raises(ConfigError, match="augment is 'none' in every cell"):
        sweep_page.choose_axes(CELLS, ("augment", "lr"))
    with pytest.raises(ConfigError, match="'dropout' is not a parameter"):
        sweep_page.choose_axes(CELLS, ("lr", "dropout"))
    for bad in ("lr", "lr,lr", "lr,", "a,b,c"):
        with pytest.raises(ConfigError, match="two different parameters"):
            sweep_page.parse_axes(bad)
    assert sweep_page.parse_axes(" lr , dense1 ") == ("lr", "dense1")


def test_heatmap_squares_are_means_over_the_other_parameters():
    cells = [
        ({"a": 1, "b": "x", "c": 0}, 0.2),
        ({"a": 1, "b": "x", "c": 1}, 0.4),
        ({"a": 2, "b": "x", "c": 0}, None),
        ({"a": 10, "b": "y", "c": 0}, 0.9),
    ]
    xs, ys, m = sweep_page.mean_grid(cells, "a", "b")
    assert (xs, ys) == ([1, 2, 10], ["x", "y"])  # numbers by size, not as text
    assert m[0][0] == pytest.approx(0.3) and math.isnan(m[0][1]) and m[1][2] == 0.9 and math.isnan(m[1][0])


def test_best_cells_are_one_per_run_by_metric():
    rows = [
        {"run_id": 1, "val_metric": 0.5, "stage": "grid", "cell_index": 0},
        {"run_id": 2, "val_metric": 0.9, "stage": "grid", "cell_index": 1},
        {"run_id": 3, "val_metric": None, "stage": "grid", "cell_index": 2},
        {"run_id": 4, "val_metric": 0.9, "stage": "finetune", "cell_index": 1},
    ]
    assert [c["run_id"] for c in sweep_page.best_cells(rows, 3)] == [2, 4, 1]
    assert sweep_page.best_cells(rows, 0) == []


# ---------------------------------------------------------------- gallery pager


def test_pages_are_seeded_bounded_and_never_overlap():
    rows = [{"pair_hash": f"{i:03d}", "i": i} for i in range(23)]
    pages = page.pages_of(rows, 5, 3, "0-style", "pair_hash")
    assert [len(p) for p in pages] == [5, 5, 5, 5]  # the index's page and 3 more: 20 of 23
    shown = [r["i"] for p in pages for r in p]
    assert len(shown) == len(set(shown)) == 20
    assert page.pages_of(list(reversed(rows)), 5, 3, "0-style", "pair_hash") == pages  # input order is irrelevant
    assert page.pages_of(rows, 5, 3, "1-style", "pair_hash") != pages
    assert [len(p) for p in page.pages_of(rows, 10, 5, 0, "pair_hash")] == [10, 10, 3]  # stops when all shown
    assert page.pages_of(rows, 0, 5, 0, "pair_hash") == [[]]
    assert page.pages_of([], 4, 5, 0, "pair_hash") == [[]]
    assert [len(p) for p in page.pages_of(rows, 4, 0, 0, "pair_hash")] == [4]


# ---------------------------------------------------------------- plots from an inspect job's map


def fabricated_map(image_ids: dict[int, str], contents: list[int], seed: int = 0) -> dict:
    """A map.json as core.inspection describes it: test points, content points, stylizations across doses."""
    points = [
        {"kind": "test", "image_id": i, "x": (n % 4) * 3.0 + n * 0.1, "y": (n // 4) * 2.0, "label": a, "predicted": a}
        for n, (i, a) in enumerate(image_ids.items())
    ]
    for n, c in enumerate(contents):
        label = image_ids.get(c, ARTISTS[0])  # a content image outside the test split has a label all the same
        points.append({"kind": "content", "image_id": c, "x": -5.0, "y": n, "label": label, "predicted": "?"})
        for s, style in enumerate(a for a in ARTISTS if a != label):
            for k, beta in enumerate((0.0, 100.0, 1000.0)):
                points.append(
                    {
                        "kind": "stylized",
                        "stylization_id": 100 * c + 10 * s + k,
                        "content_image_id": c,
                        "style_artist": style,
                        "beta": beta,
                        "x": -5.0 + k * 2 + s,
                        "y": n + k * 0.5 * s,
                        "label": label,
                        "predicted": style,
                    }
                )
    return {
        "run_id": 1,
        "batch_id": None,
        "seed": seed,
        "perplexity": 30.0,
        "layer": "fc input",
        "classes": ARTISTS,
        "points": points,
    }


def assert_png(path: Path) -> None:
    with PILImage.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.width > 100 and img.height > 100


def test_the_map_and_the_scatter_are_pngs_that_decode(tmp_path):
    from orchestrator.reports import plots

    ids = {i: ARTISTS[i % 4] for i in range(1, 13)}
    m = fabricated_map(ids, [1, 2, 99])
    m["points"] = [p for p in m["points"] if not (p["kind"] == "content" and p["image_id"] == 1)]  # a test image
    assert_png(plots.style_map(m["points"], ARTISTS, tmp_path / "map.png", "map"))
    assert_png(plots.tsne_scatter(m["points"], ARTISTS, tmp_path / "tsne.png", "t-SNE"))
    assert plots.tsne_scatter([], ARTISTS, tmp_path / "none.png", "t-SNE") is None
    many = [f"artist {i:02d}" for i in range(50)]
    confusion = [[5 if i == j else (1 if j == (i + 1) % 50 else 0) for j in range(50)] for i in range(50)]
    assert_png(plots.confusion_normalised(confusion, many, tmp_path / "confusion.png", "50 artists"))
    with PILImage.open(tmp_path / "confusion.png") as img:
        assert img.width >= 1500  # sized by the class count, so 50 names stay legible


# ---------------------------------------------------------------- pages from a store


def seed(env: dict, dataset_root: Path) -> dict:
    """A dataset of 4 artists x 3 test images (real files), a finished run with epochs, a confusion matrix and
    predictions, a 6-cell sweep over it, a style batch of that run, and a sweep and a batch sharing a prefix."""
    settings = Settings.from_env(env)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    (settings.artifacts / "png").mkdir(parents=True, exist_ok=True)
    try:
        with make_sessionmaker(engine).begin() as s:
            ds = Dataset(
                name="toy",
                root=str(dataset_root),
                format="folder",
                label_column=None,
                seed=0,
                split=[0.6, 0.2, 0.2],
                classes=ARTISTS,
            )
            s.add(ds)
            s.flush()
            images = [
                Image(dataset_id=ds.id, path=f"{a}/{i}.png", label=a, split="test") for a in ARTISTS for i in range(3)
            ]
            s.add_all(images)
            s.add(Image(dataset_id=ds.id, path="Bosch/train.png", label="Bosch", split="train"))
            s.flush()
            for img in images:
                (dataset_root / img.path).parent.mkdir(parents=True, exist_ok=True)
                PILImage.new("RGB", (64, 48), (img.id * 20 % 255, 90, 0)).save(dataset_root / img.path)
            runs = [add_run(s, ds, i, images) for i in range(6)]
            sweep = add_sweep(s, ds, runs)
            add_controls(s, runs[0], images, settings.artifacts)
            batch = add_batch(s, ds, runs[0], images, settings.artifacts)
            # two things under one prefix: "abc" names both
            s.add(Sweep(id="abc10000-0000-4000-8000-000000000000", dataset_id=ds.id, arch="x", spec={}, spec_hash="y"))
            s.add(
                StyleBatch(
                    id="abc20000-0000-4000-8000-000000000000", dataset_id=ds.id, classifier_run_id=runs[0].id, spec={}
                )
            )
            return {"run": runs[0].id, "sweep": sweep, "batch": batch, "images": {i.id: i.label for i in images}}
    finally:
        engine.dispose()


def add_sweep(s, ds: Dataset, runs: list[Run]) -> str:
    """A grid over lr (2 values) x dense1 (3), augment the same everywhere; one run per cell."""
    sweep = Sweep(
        id="5e5e0000-0000-4000-8000-000000000001",
        dataset_id=ds.id,
        arch="resnet18",
        spec={},
        spec_hash="x",
        metric="macro_f1",
    )
    s.add(sweep)
    s.flush()
    for i, r in enumerate(runs):
        cell = {"lr": (1e-3, 1e-4)[i % 2], "dense1": (128, 192, 256)[i // 2], "augment": "none"}
        s.add(SweepCell(sweep_id=sweep.id, cell_index=i, stage="grid", cell=cell, job_id=r.job_id, run_id=r.id))
    return sweep.id


def add_controls(s, run: Run, images: list[Image], artifacts: Path) -> None:
    """Matched controls: every image but two recognised unstylized."""
    for img in images:
        path = f"png/control-{img.id}.png"
        PILImage.new("RGB", (24, 24), (img.id * 20 % 255, 0, 0)).save(artifacts / path)
        s.add(
            StyleControl(
                classifier_run_id=run.id,
                image_id=img.id,
                size=STYLE["size"],
                label=img.label,
                predicted=img.label,
                correct=img.id not in (2, 7),
                top3=[],
                checkpoint_sha256=SHA,
                probs={img.label: 0.9},
                image_path=path,
            )
        )


def add_run(s, ds: Dataset, i: int, images: list[Image]) -> Run:
    job = Job(kind="train", params={}, params_hash=f"run{i}", status="succeeded")
    s.add(job)
    s.flush()
    run = Run(
        job_id=job.id,
        dataset_id=ds.id,
        arch="resnet18",
        config={"mode": "fine-tune", "seed": 7, "lr": 1e-3, "dense": [128]},
        best_epoch=2,
        best_val_top1=0.5,
        best_val_top2=0.8,
        best_val_macro_f1=0.3 + i / 20,
        test_top1=0.42,
        test_top2=0.75,
        test_macro_f1=0.4,
        weights="imagenet",
        weights_sha256="cd" * 32,
        test_confusion=CONFUSION,
        test_per_class_f1=[s.f1 for s in per_class_scores(CONFUSION)],
        checkpoint_path=f"runs/{i}/best.safetensors",
    )
    s.add(run)
    s.flush()
    for epoch in (1, 2, 3):
        for phase in ("train", "val"):
            s.add(
                EpochMetric(
                    run_id=run.id,
                    epoch=epoch,
                    phase=phase,
                    loss=1.0 / epoch,
                    top1=0.2 * epoch,
                    top2=0.3 * epoch,
                    macro_f1=0.1 * epoch + i / 100,
                    lr=1e-3,
                )
            )
    if i == 0:
        for n, img in enumerate(images):
            wrong = ARTISTS[(ARTISTS.index(img.label) + 1) % 4] if n % 3 else img.label
            p = 0.3 + n / 20
            s.add(
                Prediction(
                    run_id=run.id,
                    image_id=img.id,
                    label=img.label,
                    predicted=wrong,
                    correct=wrong == img.label,
                    top3=[[wrong, p], [img.label, 1 - p]],
                )
            )
    return run


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path_factory):
    """The same store on both backends: every query a page prints must run on either."""
    home = tmp_path_factory.mktemp("report")
    env = backend_env(request, home, "report")
    return env, seed(env, home / "paintings")


def sessions(env):
    engine = make_engine(Settings.from_env(env).database_url)
    return engine, make_sessionmaker(engine)


def fabricated_inspection(artifacts: Path, images: dict[int, str], contents: list[int]) -> page.Inspection:
    output = "inspect/fabricated"
    (artifacts / output).mkdir(parents=True, exist_ok=True)
    activations = []
    for image_id in list(images)[::3]:
        maps = []
        for what in ("mean activation block 4", "Grad-CAM"):
            name = f"{image_id}-{what.split()[0].lower()}.png"
            PILImage.new("RGB", (32, 32), (200, image_id * 10 % 255, 0)).save(artifacts / output / name)
            maps.append({"what": what, "file": name})
        label = images[image_id]
        activations.append(
            {"image_id": image_id, "label": label, "predicted": label, "path": f"{label}/x.png", "maps": maps}
        )
    return page.Inspection(output, fabricated_map(images, contents), activations)


def test_run_page(store, tmp_path):
    env, seeded = store
    artifacts = Settings.from_env(env).artifacts
    engine, make = sessions(env)
    with make() as s:
        data = run_page.collect(s, seeded["run"])
        wrong = s.execute(text(data.queries["mistakes"])).all()  # the printed query runs as printed
    engine.dispose()
    assert len(data.mistakes) == len(wrong) == 8
    probs = [m["top3"][0][1] for m in data.mistakes]
    assert probs == sorted(probs, reverse=True)
    data.inspection = fabricated_inspection(artifacts, seeded["images"], [])
    page = read_page(run_page.write(data, artifacts, tmp_path))
    assert page.rows["per-class"] == 1 + len(ARTISTS)
    assert page.rows["config"] == 1 + len(run_page.config_rows(data)) and page.rows["test"] == 2
    assert page.rows["epochs"] == 1 + 6
    assert page.figures["mistakes"] == 8 and sum(v for k, v in page.figures.items() if k.startswith("activations")) == 4
    assert {p.name for p in tmp_path.glob("*.png")} == {
        f"run-{seeded['run']}-{n}.png" for n in ("curves", "confusion", "tsne")
    }
    assert len(list((tmp_path / "thumbs").glob("*.jpg"))) == 8
    # made once into the artifacts, under the dataset's images
    assert len(list((artifacts / "thumbs" / "dataset-images").rglob("*.jpg"))) >= 8
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "cd" * 32 in html and "not computed" not in html


def test_sweep_page_links_the_best_runs_reports(store, tmp_path):
    env, seeded = store
    artifacts = Settings.from_env(env).artifacts
    engine, make = sessions(env)
    with make() as s:
        data = sweep_page.collect(s, seeded["sweep"], None, 2)
    engine.dispose()
    assert data.axes == ("dense1", "lr") and [c["run_id"] for c in data.top] == [6, 5]
    page = read_page(sweep_page.write(data, artifacts, tmp_path))
    assert page.rows["leaderboard"] == 1 + 6
    assert sorted(page.links) == ["runs/5/index.html", "runs/6/index.html"]
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "every cell: augment=none" in html and "<th>augment</th>" not in html
    assert len(list(tmp_path.glob("sweep-*.png"))) == 2
    sub = read_page(tmp_path / "runs" / "6" / "index.html")
    assert sub.links == ["../../index.html"] and sub.rows["per-class"] == 1 + len(ARTISTS)
    assert "not computed: --no-map" in (tmp_path / "runs" / "6" / "index.html").read_text(encoding="utf-8")


def test_batch_pages(store, tmp_path):
    env, seeded = store
    artifacts = Settings.from_env(env).artifacts
    engine, make = sessions(env)
    with make() as s:
        data = batch_page.collect(s, seeded["batch"], 0)
        api = analysis.attribution_table(analysis.load_batch(s, seeded["batch"]), "dose", "both")
    engine.dispose()
    data.inspection = fabricated_inspection(artifacts, seeded["images"], [1, 5])
    index = batch_page.write(data, artifacts, tmp_path, per_outcome=4, pages=2, seed=0)
    page = read_page(index)
    # The page's numbers are the Python API's: the same table, and each of its rates printed on the page.
    pd.testing.assert_frame_equal(data.study.table.reset_index(drop=True), api.reset_index(drop=True))
    html = index.read_text()
    assert all(f"{r:.2f}" in html for r in api["style_rate"].dropna())
    assert page.rows["attribution"] == 1 + 1 + 3  # the control arm, then three doses
    assert page.rows["d50"] == 1 + 2 * 4 and page.rows["contrasts"] > 1 and page.rows["baselines"] == 1 + 3
    assert (tmp_path / f"map-{seeded['batch'][:8]}.png").is_file()
    counts = Counter(r["outcome"] for r in data.rows)
    for outcome in ("content", "style", "other"):
        seen = []
        assert page.figures[outcome] == min(4, counts[outcome])
        for k in (1, 2):
            sub = read_page(tmp_path / f"gallery-{outcome}-{k}.html")
            assert sub.figures[outcome] == min(4, max(0, counts[outcome] - 4 * k))
            seen.append(sub)
        assert not (tmp_path / f"gallery-{outcome}-3.html").exists()
        assert f"gallery-{outcome}-1.html" in page.links
    thumbs = list((tmp_path / "thumbs").glob("*.jpg"))
    assert thumbs and all(t.stat().st_size > 0 for t in thumbs)
    assert list((artifacts / "thumbs" / "png").glob("*.jpg"))  # made once into the artifacts root


# ---------------------------------------------------------------- the command


def atelier(env, *args):
    return invoke(args, env)  # fails on an exception the runner would keep out of the output


def one_line_error(result, *fragments):
    assert_clean_exit(result, 1)
    assert len(result.output.strip().splitlines()) == 1, result.output
    for f in fragments:
        assert f in result.output


def test_the_reference_resolves_or_fails_in_one_line(store, tmp_path):
    env, seeded = store
    engine, make = sessions(env)
    with make() as s:
        assert find_report_target(s, str(seeded["run"])) == ("run", seeded["run"])
        assert find_report_target(s, "5e5e") == ("sweep", seeded["sweep"])
        assert find_report_target(s, seeded["batch"][:6]) == ("batch", seeded["batch"])
        for ref, message in (
            ("abc", "ambiguous"),
            ("999", "no run, sweep or style batch"),
            ("", "give a run id"),
            ("%", "no run"),
            ("_", "no run"),
            ("99999999999999999999", "no run"),
        ):
            with pytest.raises(ConfigError, match=message):
                find_report_target(s, ref)
    engine.dispose()
    out = tmp_path / "never"
    one_line_error(atelier(env, "report", "abc", "--out", str(out)), "ambiguous", "sweep abc1", "batch abc2")
    one_line_error(atelier(env, "report", "nope", "--out", str(out)), "no run, sweep or style batch 'nope'")
    one_line_error(
        atelier(env, "report", str(seeded["run"]), "--axes", "a,b", "--out", str(out)), "--axes applies to a sweep"
    )
    one_line_error(atelier(env, "report", seeded["sweep"][:8], "--axes", "lr", "--out", str(out)), "two different")
    one_line_error(
        atelier(env, "report", seeded["sweep"][:8], "--axes", "augment,lr", "--out", str(out), "--no-map"),
        "augment is 'none' in every cell",
    )
    assert not out.exists()


def test_every_lookup_takes_a_prefix_literally_and_refuses_to_guess(store):
    """`status`, `cancel`, `retry` and `results grid` share these: a sweep and a batch behind one prefix is an
    error, not the sweep; ``%`` and ``_`` are characters, not LIKE wildcards."""
    env, seeded = store
    engine, make = sessions(env)
    with make() as s:
        with pytest.raises(ConfigError, match="'abc' is ambiguous: it names sweep abc1.* and batch abc2"):
            find_group(s, "abc")
        with pytest.raises(ConfigError, match="sweep prefix '' is ambiguous"):
            find_sweep(s, "")
        assert find_group(s, "abc1") == ("sweep", "abc10000-0000-4000-8000-000000000000")
        assert find_group(s, "abc2") == ("batch", "abc20000-0000-4000-8000-000000000000")
        assert find_sweep(s, "5e5e").id == seeded["sweep"]
        for wildcard in ("%", "_", "abc_"):
            assert find_group(s, wildcard) is None and find_sweep(s, wildcard) is None
            with pytest.raises(ConfigError, match="no job"):
                find_job(s, wildcard)
        some_job = s.scalars(text("SELECT id FROM jobs ORDER BY id LIMIT 1")).one()
        assert find_job(s, some_job).id == some_job
    engine.dispose()


def test_the_command_writes_and_opens_the_page(store, tmp_path, monkeypatch):
    env, seeded = store
    opened = []
    monkeypatch.setattr("click.launch", lambda url, *a, **k: opened.append(url))
    out = tmp_path / "run"
    r = atelier(env, "report", str(seeded["run"]), "--out", str(out), "--no-map", "--open")
    assert r.exit_code == 0, r.output
    assert f"wrote {out / 'index.html'}" in r.output and opened == [(out / "index.html").resolve().as_uri()]
    html = (out / "index.html").read_text(encoding="utf-8")
    assert html.count("not computed: --no-map") == 2
    page = read_page(out / "index.html")
    engine, make = sessions(env)
    with make() as s:  # every query the page prints runs as printed
        for q in page.queries:
            s.execute(text(q)).all()
    engine.dispose()
    r = atelier(env, "report", seeded["batch"][:8], "--out", str(tmp_path / "batch"), "--no-map", "--per-outcome", "2")
    assert r.exit_code == 0, r.output
    assert "not computed: --no-map" in (tmp_path / "batch" / "index.html").read_text(encoding="utf-8")
    assert len(read_page(tmp_path / "batch" / "index.html").queries) == 2


def test_each_kind_of_report_has_its_own_default_folder(store, tmp_path, monkeypatch):
    """A sweep and a batch whose ids share eight characters would otherwise overwrite each other's page."""
    env, seeded = store
    monkeypatch.chdir(tmp_path)
    for ref, folder in (
        (str(seeded["run"]), f"report-run-{seeded['run']}"),
        (seeded["sweep"][:8], f"report-sweep-{seeded['sweep'][:8]}"),
        (seeded["batch"][:8], f"report-batch-{seeded['batch'][:8]}"),
    ):
        r = atelier(env, "report", ref, "--no-map")
        assert r.exit_code == 0, r.output
        assert (tmp_path / folder / "index.html").is_file(), r.output
    assert len(list(tmp_path.glob("report-*"))) == 3


def test_a_running_batch_is_reported_and_its_map_waits(store, tmp_path):
    """No inspect job for a batch with work still queued (none could run here: there is no broker); the page
    says why its map is missing."""
    from db import jobs

    env, seeded = store
    engine, make = sessions(env)
    with make() as s, s.begin():
        jobs.create_job(s, "stylize", {}).group_id = seeded["batch"]
    engine.dispose()
    r = atelier(env, "report", seeded["batch"][:8], "--out", str(tmp_path / "b"), "--per-outcome", "2")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "b" / "index.html").read_text(encoding="utf-8")
    assert "1 job(s) of the batch are still queued or running" in html
    assert read_page(tmp_path / "b" / "index.html").rows["attribution"] == 1 + 1 + 3


def test_a_work_removed_by_hand_leaves_the_report_whole(store, tmp_path):
    env, seeded = store
    artifacts = Settings.from_env(env).artifacts
    engine, make = sessions(env)
    with make() as s:
        data = batch_page.collect(s, seeded["batch"], 0)
    engine.dispose()
    away = tmp_path / "away"
    for r in data.rows:  # every work gone (the store is shared by the module: put back after)
        (away / r["image_path"]).parent.mkdir(parents=True, exist_ok=True)
        (artifacts / r["image_path"]).rename(away / r["image_path"])
    try:
        index = batch_page.write(data, artifacts, tmp_path / "page", per_outcome=2, pages=0, seed=0)
    finally:
        for r in data.rows:
            (away / r["image_path"]).rename(artifacts / r["image_path"])
    assert read_page(index).rows["attribution"] == 1 + 1 + 3
    assert (tmp_path / "page" / f"attribution-{seeded['batch'][:8]}-contact-sheet.png").is_file()
