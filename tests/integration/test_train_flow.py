"""dataset synth -> train -> a real worker -> results in SQL, on SQLite and PostgreSQL."""

import json

import pytest

from tests.conftest import unique

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stack_name", ["sqlite_stack", "pg_stack"])
def test_synth_train_records_epochs_above_chance(request, stack_name):
    stack = request.getfixturevalue(stack_name)
    name = unique("synth")
    stack.atelier("dataset", "synth", name, "--artists", "4", "--per-artist", "16", "--size", "40", "--seed", "1")
    out = stack.json(
        "train",
        "--dataset",
        name,
        "--arch",
        "baseline-cnn",
        "--weights",
        "random",
        "--epochs",
        "4",
        "--image-size",
        "32",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--augment",
        "none",
    )
    row = stack.wait_job(out["job"])
    assert row["status"] == "succeeded", row["error"]

    epochs = stack.query(
        f"SELECT epoch, phase, top1, macro_f1 FROM epoch_metrics WHERE run_id = {out['run']} ORDER BY epoch, phase"
    )
    assert [(e["epoch"], e["phase"]) for e in epochs] == [(i, p) for i in range(1, 5) for p in ("train", "val")]
    (run,) = stack.query(
        f"SELECT best_val_top1, best_val_macro_f1, test_top1, checkpoint_path FROM runs WHERE id = {out['run']}"
    )
    assert run["best_val_top1"] > 0.25 + 0.15, "4 artists: chance is 0.25"
    assert run["test_top1"] is not None and run["checkpoint_path"].endswith(".safetensors")
    assert (stack.home / "home" / "artifacts" / run["checkpoint_path"]).exists()

    listing = stack.atelier("results", "runs", "--dataset", name).stdout
    assert str(out["run"]) in listing and "baseline-cnn" in listing


def test_resnet18_feature_extract_and_status(sqlite_stack):
    name = unique("r18")
    sqlite_stack.atelier("dataset", "synth", name, "--artists", "3", "--per-artist", "8", "--size", "40")
    out = sqlite_stack.json(
        "train",
        "--dataset",
        name,
        "--arch",
        "resnet18",
        "--weights",
        "random",
        "--mode",
        "feature-extract",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
    )
    assert sqlite_stack.wait_job(out["job"])["status"] == "succeeded"
    status = sqlite_stack.atelier("status", out["job"]).stdout
    assert "succeeded" in status and "100%" in status


def test_test_split_predictions_and_plots(sqlite_stack, classifier, tmp_path):
    name, run_id = classifier
    (n_test,) = sqlite_stack.query(
        f"SELECT count(*) AS n FROM images i JOIN datasets d ON d.id = i.dataset_id WHERE d.name = '{name}' AND i.split = 'test'"
    )
    preds = sqlite_stack.query(f"SELECT label, predicted, correct, top3 FROM predictions WHERE run_id = {run_id}")
    assert len(preds) == n_test["n"] > 0
    for p in preds:
        top3 = json.loads(p["top3"]) if isinstance(p["top3"], str) else p["top3"]
        assert top3[0][0] == p["predicted"] and bool(p["correct"]) == (p["label"] == p["predicted"])
        assert top3[0][1] >= top3[1][1] >= top3[2][1]
    (run,) = sqlite_stack.query(f"SELECT test_top1, test_confusion FROM runs WHERE id = {run_id}")
    assert run["test_top1"] == pytest.approx(sum(bool(p["correct"]) for p in preds) / len(preds))

    shown = sqlite_stack.atelier("results", "run", str(run_id), "--plot", str(tmp_path))
    assert "confusion matrix" in shown.stdout
    from PIL import Image

    for kind in ("curves", "confusion"):
        with Image.open(tmp_path / f"run-{run_id}-{kind}.png") as im:
            assert im.width > 300


def test_workers_run_jobs_on_the_threads_they_were_given(sqlite_stack):
    # tests.services.Worker starts every worker with `--threads 1`; torch's default is one per core.
    for w in sqlite_stack.workers:
        assert "jobs run on 1 CPU thread(s)" in w.log.read_text(), w.log
