"""`atelier results attribution`, `runs` and `grid` on a seeded store (SQLite, PostgreSQL): named rows, counts per
stratum from the views docs/methods.md documents, and the same numbers as a recount of the rows."""

import json
import random

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import text

import analysis
from analysis.records import OUTCOMES
from core.settings import Settings
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import Dataset, Image, Job, Run, StyleBatch, StyleBatchPair, StyleControl, Stylization, Sweep, SweepCell
from tests.cli_run import assert_clean_exit, invoke
from tests.conftest import backend_env

ARTISTS = ("Bosch", "Cézanne", "Monet", "Vermeer")
DOSES = (0.0, 0.5, 2.0)
SHA = "5e" * 32  # the classifier checkpoint that answered
STYLE = {
    "loss": "gatys",
    "pool": "avg",
    "init": "content",
    "optimizer": "adam",
    "steps": 3,
    "size": 24,
    "content_weight": 1.0,
    "vgg": "vgg19",
}


def seed_store(env: dict) -> tuple[str, str]:
    """A dataset of 4 artists x 3 images, 3 classifier runs in a sweep, the first one's controls (3 images it gets
    wrong) and a style batch over every image pair at 3 doses, same-artist pairs too, some of them shared with a
    second batch; returns (batch id, sweep id)."""
    settings = Settings.from_env(env)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    (settings.artifacts / "png").mkdir(parents=True, exist_ok=True)
    try:
        with make_sessionmaker(engine).begin() as s:
            ds = Dataset(
                name="toy",
                root="/nowhere",
                format="folder",
                label_column=None,
                seed=0,
                split=[0.6, 0.2, 0.2],
                classes=list(ARTISTS),
            )
            s.add(ds)
            s.flush()
            images = [
                Image(dataset_id=ds.id, path=f"{a}/{i}.png", label=a, split="test") for a in ARTISTS for i in range(3)
            ]
            s.add_all(images)
            runs = add_runs(s, ds)
            sweep = Sweep(dataset_id=ds.id, arch="resnet18", spec={}, spec_hash="x", metric="macro_f1")
            s.add(sweep)
            s.flush()
            s.add_all(
                SweepCell(
                    sweep_id=sweep.id,
                    cell_index=i,
                    stage="grid",
                    cell={"lr": lr, "augment": "keras"},
                    job_id=r.job_id,
                    run_id=r.id,
                )
                for i, (r, lr) in enumerate(zip(runs, (1e-3, 1e-4, 1e-2)))
            )
            for img in images:
                path = f"png/control-{img.id}.png"
                PILImage.new("RGB", (4, 4), (img.id * 20 % 255, 0, 0)).save(settings.artifacts / path)
                s.add(
                    StyleControl(
                        classifier_run_id=runs[0].id,
                        image_id=img.id,
                        size=STYLE["size"],
                        label=img.label,
                        predicted=img.label,
                        correct=img.id not in (2, 7, 11),
                        top3=[],
                        checkpoint_sha256=SHA,
                        probs={a: (0.7 if a == img.label else 0.1) for a in ARTISTS},
                        image_path=path,
                    )
                )
            batch = add_batch(s, ds, runs[0], images, settings.artifacts)
            return batch, sweep.id
    finally:
        engine.dispose()


def add_runs(s, ds: Dataset) -> list[Run]:
    runs = []
    for i, (f1, weights) in enumerate(((0.61, "imagenet"), (0.72, None), (0.72, "random"))):
        job = Job(kind="train", params={}, params_hash=f"h{i}", status="succeeded")
        s.add(job)
        s.flush()
        runs.append(
            Run(
                job_id=job.id,
                dataset_id=ds.id,
                arch="resnet18",
                config={"mode": "fine-tune", "weights": "random"},
                best_epoch=2,
                best_val_top1=0.5 + i / 10,
                best_val_top2=0.8,
                best_val_macro_f1=f1,
                test_top1=0.55,
                test_top2=0.81,
                test_macro_f1=0.52,
                weights=weights,
                weights_sha256="ab" * 32 if weights == "imagenet" else None,
            )
        )
    s.add_all(runs)
    s.flush()
    return runs


def add_batch(s, ds: Dataset, run: Run, images: list[Image], artifacts) -> str:
    """Every (content, style) image pair at every dose, outcomes drawn at random; a second batch shares some."""
    rng = random.Random(7)
    batches = [
        StyleBatch(
            dataset_id=ds.id,
            classifier_run_id=run.id,
            spec={"style": STYLE, "vgg_weights": None, "vgg_norm": None, "doses": list(DOSES)},
        )
        for _ in range(2)
    ]
    s.add_all(batches)
    s.flush()
    for c, st, beta in ((c, st, beta) for c in images for st in images for beta in DOSES):
        h = f"{c.id}-{st.id}-{beta:g}"
        outcome = "same" if c.label == st.label else rng.choice(OUTCOMES)
        path = f"png/{h}.png"
        PILImage.new("RGB", (4, 4), (0, c.id * 20 % 255, st.id * 20 % 255)).save(artifacts / path)
        s.add(
            Stylization(
                pair_hash=h,
                batch_id=batches[0].id,
                job_id=run.job_id,
                content_image_id=c.id,
                content_artist=c.label,
                style_image_id=st.id,
                style_artist=st.label,
                content_weight=1.0,
                style_weight=beta * 1e4,
                dose=beta,
                balance=beta * (0.8 + 0.4 * rng.random()),
                checkpoint_sha256=SHA,
                p_content=rng.random() / 2,
                p_style=rng.random() / 2,
                probs={},
                answers=[],
                predicted_half=c.label,
                steps=3,
                size=STYLE["size"],
                optimizer="adam",
                vgg_weights="random",
                seed=1,
                loss_ratio=None if rng.random() < 0.2 else rng.random() * beta,
                content_loss=1.0,
                style_loss=1.0,
                classifier_run_id=run.id,
                predicted={"same": c.label, "content": c.label, "style": st.label}.get(outcome, "?"),
                top3=[],
                outcome=outcome,
                image_path=path,
            )
        )
        s.add(StyleBatchPair(batch_id=batches[0].id, pair_hash=h))
        if c.id % 2 and beta:
            s.add(StyleBatchPair(batch_id=batches[1].id, pair_hash=h))
    return batches[0].id


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path_factory):
    env = backend_env(request, tmp_path_factory.mktemp("attribution"), "attr")
    batch, sweep = seed_store(env)
    return env, batch, sweep


def atelier(env, *args):
    from orchestrator.cli import cli

    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def recount(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, dict]:
    """The counts of each stratum, regrouped by hand from per-stylization rows."""
    out: dict[tuple, dict] = {}
    for r in rows:
        c = out.setdefault(
            tuple(r[k] for k in keys), {"n": 0, "pairs": set(), "ci": set(), "si": set(), **{o: 0 for o in OUTCOMES}}
        )
        c["n"] += 1
        c[r["outcome"]] += 1
        c["pairs"].add((r["content_image_id"], r["style_image_id"]))
        c["ci"].add(r["content_image_id"])
        c["si"].add(r["style_image_id"])
    return {
        k: {
            "n": c["n"],
            "pairs": len(c["pairs"]),
            "content_images": len(c["ci"]),
            "style_images": len(c["si"]),
            **{o: c[o] for o in OUTCOMES},
        }
        for k, c in out.items()
    }


@pytest.mark.parametrize("by", analysis.GROUPS)
@pytest.mark.parametrize("condition", analysis.CONDITIONS)
def test_the_api_and_the_cli_agree_and_match_a_recount_of_the_rows(store, by, condition):
    env, batch, _ = store
    url = Settings.from_env(env).database_url
    records = analysis.load_batch(url, batch[:8])
    assert len(records) == 12 * 12 * 3 and set(records["arm"]) == {"cross", "same"}
    assert (records["treatment"] == "dose").all() and set(records["level"]) == set(DOSES)
    assert records["content_control_p_content"].eq(0.7).all()  # the controls' probabilities joined by checkpoint
    rows = analysis.kept(records, condition)
    keys = analysis.GROUPS[by]
    expected = recount(rows.to_dict("records"), ("level", *keys))
    out = json.loads(
        atelier(env, "results", "attribution", batch[:8], "--by", by, "--condition", condition, "--format", "json")
    )
    assert "jackknife over images" in out["method"] and out["treatment"] == "dose"
    doses = [t for t in out["rates"] if t["treatment"] == "dose"]
    assert len(doses) == len(expected)
    for t in doses:
        e = expected[(t["level"], *(t[k] for k in keys))]
        assert (t["n"], t["pairs"], t["content_images"], t["style_images"]) == (
            e["n"],
            e["pairs"],
            e["content_images"],
            e["style_images"],
        )
        for o in OUTCOMES:
            assert (t[f"{o}_count"], t[f"{o}_rate"]) == (e[o], pytest.approx(e[o] / e["n"]))
            assert t[f"{o}_low"] is None or t[f"{o}_low"] <= t[f"{o}_rate"] <= t[f"{o}_high"]
    api = analysis.attribution_table(records, by, condition)
    assert list(api.loc[api["treatment"] == "dose", "style_rate"]) == pytest.approx([t["style_rate"] for t in doses])
    controls = [t for t in out["rates"] if t["treatment"] == "control"]
    assert len(controls) == max(1, len({tuple(t[k] for k in keys) for t in doses}))
    assert len(out["baselines"]) == len(doses) and all(b["chance_uniform"] == 0.25 for b in out["baselines"])


def test_the_views_count_what_the_api_counts(store):
    env, batch, _ = store
    url = Settings.from_env(env).database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        view = [
            dict(r)
            for r in conn.execute(
                text("SELECT * FROM attribution_by_weight WHERE batch_id = :b"), {"b": batch}
            ).mappings()
        ]
    engine.dispose()
    table = analysis.attribution_table(analysis.load_batch(url, batch), "dose", "both")
    doses = table[table["treatment"] == "dose"]
    assert sorted((v["level"], v["n"], v["style"]) for v in view) == sorted(
        zip(doses["level"], doses["n"], doses["style_count"])
    )


def test_table_csv_plots_dose_response_and_export(store, tmp_path):
    env, batch, _ = store
    for by in analysis.GROUPS:
        shown = atelier(env, "results", "attribution", batch[:8], "--by", by, "--condition", "none")
        assert "kept 324 of 324 cross-artist stylizations" in shown and "uniform chance" in shown
        assert "jackknife" in shown and "unstylized" in shown  # the control row (rich may wrap its cell)
        lines = atelier(env, "results", "attribution", batch[:8], "--by", by, "--format", "csv")
        assert lines.splitlines()[0].startswith(",".join(("treatment", "level", *analysis.GROUPS[by])))
    for part in ("contrasts", "baselines", "cells"):
        assert atelier(env, "results", "attribution", batch[:8], "--format", "csv", "--part", part).count("\n") > 1
    shown = atelier(env, "results", "attribution", batch[:8], "--by", "dose", "--plot", str(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        f"attribution-{batch[:8]}-{name}.png" for name in ("contact-sheet", "dose-response", "heatmap")
    ]
    assert shown.count("wrote ") == 3
    fits = json.loads(atelier(env, "results", "dose-response", batch[:8], "--condition", "none", "--format", "json"))
    assert {(f["style_artist"], f["outcome"]) for f in fits["fits"]} == {
        (a, o) for a in ARTISTS for o in ("named", "probs")
    }
    assert "d50" in atelier(env, "results", "dose-response", batch[:8], "--by", "all", "--plot", str(tmp_path))
    assert (tmp_path / f"dose-response-{batch[:8]}-all.png").is_file()
    out = tmp_path / "all.csv"
    atelier(env, "results", "export", batch[:8], "--out", str(out))
    import pandas as pd

    frame = pd.read_csv(out)
    assert (frame["record"] == "stylization").sum() == 12 * 12 * 3 and (frame["record"] == "control").sum() == 12
    assert {"dose", "style_weight", "p_style", "checkpoint_sha256", "probs", "seed", "vgg_weights"} <= set(
        frame.columns
    )
    atelier(env, "results", "export", batch[:8], "--format", "parquet", "--out", str(tmp_path / "all.parquet"))
    assert len(pd.read_parquet(tmp_path / "all.parquet")) == len(frame)


def test_bad_inputs_are_one_line_errors(store):
    env, batch, _ = store
    for args in (
        ["results", "attribution", "nope"],
        ["results", "dose-response", "nope"],
        ["results", "export", batch[:8], "--format", "parquet"],
    ):
        result = invoke(args, env)
        assert_clean_exit(result, 1)
        assert len(result.output.strip().splitlines()) == 1, result.output
    for command in ("attribution", "dose-response"):  # an unknown grouping: click's usage error, exit 2
        result = invoke(["results", command, batch[:8], "--by", "nope"], env)
        assert_clean_exit(result, 2)
        assert "Invalid value for '--by'" in result.output.strip().splitlines()[-1], result.output


def test_results_runs_and_grid_read_named_rows(store):
    env, _, sweep = store
    runs = json.loads(atelier(env, "results", "runs", "--json"))
    assert [(r["run"], r["dataset"], r["weights"], r["val F1"]) for r in runs] == [
        (1, "toy", "imagenet", 0.61),
        (2, "toy", "random", 0.72),
        (3, "toy", "random", 0.72),
    ]
    assert runs[0]["weights sha256"] == "ab" * 32
    assert "abababababab " in atelier(env, "results", "runs")
    grid = json.loads(atelier(env, "results", "grid", sweep[:8], "--json"))
    assert [(g["rank"], g["run"], g["cell"]) for g in grid] == [
        (1, 2, {"lr": 1e-4, "augment": "keras"}),
        (1, 3, {"lr": 1e-2, "augment": "keras"}),
        (3, 1, {"lr": 1e-3, "augment": "keras"}),
    ]
    assert [g["weights"] for g in grid] == ["random", "random", "imagenet"]
    assert len(json.loads(atelier(env, "results", "grid", sweep[:8], "--json", "--top", "1"))) == 2
    shown = atelier(env, "results", "grid", sweep[:8])
    # What every cell shares is said once above the table; the cell column shows only what varies.
    assert "every cell: augment=keras" in shown and "weights:" in shown
    assert "lr=0.0001" in shown and "augment=keras" not in shown.split("every cell:")[1].split("\n", 1)[1]
