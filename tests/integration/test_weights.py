"""Real weights by default, always on the record (docs/architecture.md, rule 6), through the CLI, a real store
and a real worker.

The stack is offline with an empty torch cache: ImageNet weights exist only where a test imports them. Archs
are chosen so the tests hold in any order: resnet50 and alexnet are never imported as 'imagenet' here,
resnet18 is (by the import test).
"""

import json

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import load_file, save_file

from tests.conftest import unique
from tests.integration.test_grid import wait_sweep
from worker.ml.backbones import _alexnet_features

pytestmark = pytest.mark.integration

COUNTS = (
    "SELECT (SELECT count(*) FROM jobs) AS jobs, (SELECT count(*) FROM runs) AS runs, "
    "(SELECT count(*) FROM sweeps) AS sweeps"
)
SMALL = ["--image-size", "32", "--epochs", "1", "--batch-size", "8", "--augment", "none"]


def one_line_error(result, *fragments):
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert all(f in lines[0] for f in fragments), lines[0]
    return lines[0]


def params(stack, job_id):
    (row,) = stack.query(f"SELECT params FROM jobs WHERE id = '{job_id}'")
    return row["params"] if isinstance(row["params"], dict) else json.loads(row["params"])


def test_imagenet_by_default_fails_at_submit_in_one_line_and_writes_nothing(sqlite_stack):
    stack = sqlite_stack
    name = unique("noweights")
    stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "4", "--size", "32")
    before = stack.query(COUNTS)
    r = stack.atelier("train", "--dataset", name, "--arch", "resnet50", *SMALL, expect=1)
    one_line_error(
        r, "resnet50-0676ba61.pth", "`atelier weights import resnet50-0676ba61.pth --arch resnet50`", "offline"
    )
    r = stack.atelier(
        "grid", "--dataset", name, "--arch", "alexnet", "--image-size", "64", "--dense1", "8,16", expect=1
    )
    one_line_error(r, "alexnet-owt-7be5be79.pth", "--arch alexnet")
    r = stack.atelier("train", "--dataset", name, "--arch", "resnet50", "--weights", "imagenet", *SMALL, expect=1)
    one_line_error(r, "resnet50-0676ba61.pth")
    assert stack.query(COUNTS) == before
    assert "'random' (explicit random init" in " ".join(stack.atelier("train", "--help").stdout.split())


def test_random_init_is_recorded_and_every_result_warns(sqlite_stack):
    stack = sqlite_stack
    name = unique("random")
    stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "6", "--size", "32")
    rand = stack.json(
        "train", "--dataset", name, "--arch", "resnet18", "--weights", "random", "--mode", "feature-extract", *SMALL
    )
    base = stack.json("train", "--dataset", name, "--arch", "baseline-cnn", *SMALL)  # random by nature: no warning
    for out in (rand, base):
        assert stack.wait_job(out["job"])["status"] == "succeeded"
        assert params(stack, out["job"])["weights"] == {"name": "random", "sha256": None, "path": None}
    runs = stack.query(
        f"SELECT id, weights, weights_sha256 FROM runs WHERE id IN ({rand['run']}, {base['run']}) ORDER BY id"
    )
    assert [(r["weights"], r["weights_sha256"]) for r in runs] == [("random", None)] * 2

    listing = stack.atelier("results", "runs", "--dataset", name).stdout
    warning = f"warning: random init: run {rand['run']} started from random weights, not ImageNet features"
    assert warning in listing and "runs " not in listing.split("warning:")[1]  # baseline-cnn is not named
    shown = stack.atelier("results", "run", str(rand["run"])).stdout
    assert "weights: random" in shown and warning in shown
    assert "warning" not in stack.atelier("results", "run", str(base["run"])).stdout
    as_json = stack.atelier("results", "runs", "--dataset", name, "--json")
    rows = json.loads(as_json.stdout)  # the warning goes to stderr: the JSON stays parseable
    assert {r["run"]: r["weights"] for r in rows} == {rand["run"]: "random", base["run"]: "random"}
    assert warning in as_json.stderr

    sweep = stack.json("grid", "--dataset", name, "--arch", "resnet18", "--weights", "random", "--dense1", "8", *SMALL)
    assert all(r["status"] == "succeeded" for r in wait_sweep(stack, sweep["sweep"], expected=1))
    (features,) = stack.query(f"SELECT params FROM jobs WHERE kind = 'features' AND group_id = '{sweep['sweep']}'")
    assert json.loads(features["params"])["weights"]["name"] == "random"
    grid = stack.atelier("results", "grid", sweep["sweep"]).stdout
    assert "weights: random" in grid and "warning: random init: run " in grid and "not ImageNet features" in grid


def test_import_refuses_another_arch_and_what_it_keeps_is_listed_and_used(sqlite_stack, tmp_path):
    stack = sqlite_stack
    torch.manual_seed(3)
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "resnet18-ours.pth")  # torchvision's layout
    # Features only, as the real VGG and AlexNet ImageNet files are: no classifier.* keys.
    save_file(
        {f"features.{k}": v.contiguous() for k, v in _alexnet_features().state_dict().items()},
        str(tmp_path / "alexnet-features.safetensors"),
    )
    listed = stack.json("weights", "list")

    r = stack.atelier(
        "weights", "import", str(tmp_path / "alexnet-features.safetensors"), "--arch", "resnet18", expect=1
    )
    one_line_error(r, "holds no resnet18 weights")
    assert stack.json("weights", "list") == listed

    alex = unique("alexnet")
    imported = stack.json(
        "weights", "import", str(tmp_path / "alexnet-features.safetensors"), "--arch", "alexnet", "--name", alex
    )
    r18 = stack.json("weights", "import", str(tmp_path / "resnet18-ours.pth"), "--arch", "resnet18")
    assert r18["name"] == "imagenet" and r18["path"] == f"weights/resnet18/{r18['sha256']}.safetensors"
    entries = {(w["arch"], w["name"]): w for w in stack.json("weights", "list")}
    assert entries["alexnet", alex]["features_only"] and entries["alexnet", alex]["sha256"] == imported["sha256"]
    assert entries["resnet18", "imagenet"]["sha256"] == r18["sha256"] and entries["resnet18", "imagenet"]["present"]
    assert not entries["resnet18", "imagenet"]["features_only"]
    table = stack.atelier("weights", "list").stdout
    assert alex in table and r18["sha256"][:12] in table

    name = unique("imported")
    stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "6", "--size", "32")
    out = stack.json(
        "train", "--dataset", name, "--arch", "resnet18", "--weights", "imagenet", "--mode", "feature-extract", *SMALL
    )
    assert stack.wait_job(out["job"])["status"] == "succeeded"
    (run,) = stack.query(f"SELECT weights, weights_sha256, checkpoint_path FROM runs WHERE id = {out['run']}")
    assert (run["weights"], run["weights_sha256"]) == ("imagenet", r18["sha256"])
    assert params(stack, out["job"])["weights"] == {k: r18[k] for k in ("name", "sha256", "path")}
    # The frozen backbone of the best checkpoint is exactly the imported file: the worker loaded it.
    best = load_file(str(stack.home / "home" / "artifacts" / run["checkpoint_path"]))
    kept = load_file(str(stack.home / "home" / "artifacts" / r18["path"]))
    assert torch.equal(best["backbone.layer4.1.conv2.weight"], kept["layer4.1.conv2.weight"])
    listing = stack.atelier("results", "runs", "--dataset", name).stdout
    assert "imagenet" in listing and r18["sha256"][:12] in listing and "warning" not in listing
    assert f"weights: imagenet (sha256 {r18['sha256'][:12]})" in stack.atelier("results", "run", str(out["run"])).stdout

    # A grid takes the same default: its features job and every cell carry the record.
    sweep = stack.json("grid", "--dataset", name, "--arch", "resnet18", "--dense1", "8", *SMALL)
    assert all(r["status"] == "succeeded" for r in wait_sweep(stack, sweep["sweep"], expected=1))
    (features,) = stack.query(f"SELECT params FROM jobs WHERE kind = 'features' AND group_id = '{sweep['sweep']}'")
    assert json.loads(features["params"])["weights"]["sha256"] == r18["sha256"]
    cells = stack.query(
        f"SELECT r.weights_sha256 FROM runs r JOIN sweep_cells c ON c.run_id = r.id "
        f"WHERE c.sweep_id = '{sweep['sweep']}'"
    )
    assert [c["weights_sha256"] for c in cells] == [r18["sha256"]]
    grid = stack.atelier("results", "grid", sweep["sweep"]).stdout
    assert f"weights: imagenet (sha256 {r18['sha256'][:12]})" in grid and "warning" not in grid
