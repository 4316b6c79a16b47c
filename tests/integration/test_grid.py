"""A small grid end to end through real workers: one features job shared by every cell."""

import json

import pytest

from tests.conftest import unique
from tests.services import wait_until

pytestmark = pytest.mark.integration

GRID = [
    "--arch",
    "resnet18",
    "--weights",
    "random",
    "--image-size",
    "32",
    "--head",
    "gap,spp",
    "--dense1",
    "8:8:16",
    "--dense2",
    "4",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--lr",
    "1e-3",
]


def sweep_rows(stack, sweep):
    return stack.query(f"SELECT * FROM grid_leaderboard WHERE sweep_id = '{sweep}' ORDER BY stage DESC, rank")


def wait_sweep(stack, sweep, expected, timeout=300):
    def done():
        rows = sweep_rows(stack, sweep)
        ended = [r for r in rows if r["status"] in ("succeeded", "failed", "cancelled")]
        return rows if len(rows) == expected and len(ended) == expected else None

    return wait_until(done, timeout, f"sweep {sweep}", interval=1)


def test_grid_shares_features_ranks_cells_and_reuses_them(sqlite_stack, tmp_path):
    stack = sqlite_stack
    name = unique("grid")
    stack.atelier("dataset", "synth", name, "--artists", "3", "--per-artist", "8", "--size", "40")

    dry = stack.atelier("grid", "--dataset", name, *GRID, "--dry-run").stdout
    assert "4 cells" in dry
    assert (
        stack.query(
            f"SELECT count(*) AS n FROM sweeps s JOIN datasets d ON d.id = s.dataset_id WHERE d.name = '{name}'"
        )[0]["n"]
        == 0
    )

    out = stack.json("grid", "--dataset", name, *GRID, "--finetune-top", "1")
    assert out["cells"] == 4
    rows = wait_sweep(stack, out["sweep"], expected=5)  # 4 cells + 1 fine-tune follow-up
    assert all(r["status"] == "succeeded" for r in rows), rows
    grid = [r for r in rows if r["stage"] == "grid"]
    f1 = [r["val_macro_f1"] for r in grid]
    assert f1 == sorted(f1, reverse=True) and grid[0]["rank"] == 1
    assert len({r["cell_index"] for r in grid}) == 4

    features = stack.query(f"SELECT id, status FROM jobs WHERE kind = 'features' AND group_id = '{out['sweep']}'")
    assert [f["status"] for f in features] == ["succeeded"]
    cells = stack.query(
        f"SELECT j.params, j.depends_on FROM jobs j JOIN sweep_cells c ON c.job_id = j.id "
        f"WHERE c.sweep_id = '{out['sweep']}' AND c.stage = 'grid'"
    )
    assert all(c["depends_on"] == features[0]["id"] for c in cells)
    assert len({json.loads(c["params"])["features"] for c in cells}) == 1
    (ft,) = [r for r in rows if r["stage"] == "finetune"]
    assert ft["cell_index"] == grid[0]["cell_index"]

    listing = stack.atelier("results", "grid", out["sweep"], "--plot", str(tmp_path)).stdout
    assert "grid" in listing and "finetune" in listing
    assert len(list(tmp_path.glob("sweep-*-dense2-dense1.png"))) == 1
    status = stack.atelier("status", out["sweep"]).stdout
    assert "succeeded 6" in status  # the features job, 4 cells, the fine-tune follow-up
    counts = stack.json("status", out["sweep"])
    assert (counts["sweep"], counts["jobs"], counts["succeeded"], counts["failed"]) == (out["sweep"], 6, 6, 0)

    again = stack.json("grid", "--dataset", name, *GRID)
    rows2 = wait_sweep(stack, again["sweep"], expected=4, timeout=30)
    reused = stack.query(f"SELECT reused FROM sweep_cells WHERE sweep_id = '{again['sweep']}'")
    assert all(r["reused"] for r in reused) and len(reused) == 4
    assert {r["run_id"] for r in rows2} == {r["run_id"] for r in grid}
    assert stack.query(f"SELECT count(*) AS n FROM jobs WHERE group_id = '{again['sweep']}'")[0]["n"] == 0


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--dense1", "128:0:512"], "step must be positive"),
        (["--dense1", "512:64:128"], "start is after stop"),
        (["--lr", "fast"], "not a number"),
        (["--dense1", "1:1:200", "--dense2", "1:1:100"], "more than --max-cells"),
    ],
)
def test_bad_grid_specs_submit_nothing(sqlite_stack, args, fragment):
    name = unique("badgrid")
    sqlite_stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "3", "--size", "32")
    r = sqlite_stack.atelier("grid", "--dataset", name, "--arch", "resnet18", *args, expect=1)
    assert fragment in r.output and len(r.output.strip().splitlines()) == 1
    assert (
        sqlite_stack.query(
            f"SELECT count(*) AS n FROM sweeps s JOIN datasets d ON d.id = s.dataset_id WHERE d.name = '{name}'"
        )[0]["n"]
        == 0
    )


def test_unknown_grid_option_is_a_usage_error(sqlite_stack):
    r = sqlite_stack.atelier("grid", "--dataset", "x", "--arch", "resnet18", "--colour", "red", expect=2)
    assert "--colour" in r.output


def test_augmented_feature_grid_with_one_view_is_refused(sqlite_stack):
    name = unique("oneview")
    sqlite_stack.atelier("dataset", "synth", name, "--artists", "2", "--per-artist", "3", "--size", "32")
    counts = (
        "SELECT (SELECT count(*) FROM sweeps) AS sweeps, (SELECT count(*) FROM jobs) AS jobs, "
        "(SELECT count(*) FROM runs) AS runs"
    )
    before = sqlite_stack.query(counts)
    r = sqlite_stack.atelier(
        "grid",
        "--dataset",
        name,
        "--arch",
        "resnet18",
        "--weights",
        "random",
        "--image-size",
        "32",
        "--augment",
        "none,keras",
        "--views",
        "1",
        expect=1,
    )
    assert "needs --views >= 2" in r.output and "keras" in r.output and len(r.output.strip().splitlines()) == 1
    assert sqlite_stack.query(counts) == before


def test_grid_ranks_by_its_metric_and_records_feature_views(sqlite_stack, tmp_path):
    stack = sqlite_stack
    name = unique("top1grid")
    stack.atelier("dataset", "synth", name, "--artists", "3", "--per-artist", "8", "--size", "40")
    out = stack.json(
        "grid",
        "--dataset",
        name,
        "--arch",
        "resnet18",
        "--weights",
        "random",
        "--image-size",
        "32",
        "--head",
        "gap",
        "--dense1",
        "8",
        "--lr",
        "1e-3,3e-2",
        "--augment",
        "none,crop-flip",
        "--views",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--metric",
        "top1",
        "--finetune-top",
        "1",
    )
    rows = wait_sweep(stack, out["sweep"], expected=5)  # 4 cells + the fine-tune follow-up of the best top-1
    assert all(r["status"] == "succeeded" for r in rows), rows
    grid = [r for r in rows if r["stage"] == "grid"]
    assert all(r["metric"] == "top1" and r["val_metric"] == r["val_top1"] for r in grid)
    for r in grid:  # RANK(): 1 + the cells with a strictly better validation top-1
        assert r["rank"] == 1 + sum(o["val_top1"] > r["val_top1"] for o in grid), grid
    (ft,) = [r for r in rows if r["stage"] == "finetune"]
    assert ft["cell_index"] == min(r["cell_index"] for r in grid if r["rank"] == 1)

    configs = {
        c["cell_index"]: (json.loads(c["cell"]), json.loads(c["config"]))
        for c in stack.query(
            "SELECT c.cell_index, c.cell, r.config FROM sweep_cells c JOIN runs r ON r.id = c.run_id "
            f"WHERE c.sweep_id = '{out['sweep']}' AND c.stage = 'grid'"
        )
    }
    assert {(cell["augment"], cfg["views"], cfg["features_seed"]) for cell, cfg in configs.values()} == {
        ("none", 1, 0),
        ("crop-flip", 2, 0),
    }
    features = stack.query(f"SELECT params FROM jobs WHERE kind = 'features' AND group_id = '{out['sweep']}'")
    assert sorted((p["augment"], p["views"]) for p in map(json.loads, (f["params"] for f in features))) == [
        ("crop-flip", 2),
        ("none", 1),
    ]

    listing = stack.atelier(
        "results", "grid", out["sweep"], "--plot", str(tmp_path), "--x", "lr", "--y", "augment"
    ).stdout
    assert "ranked by validation top-1" in " ".join(listing.split())
    assert len(list(tmp_path.glob("sweep-*-augment-lr.png"))) == 1
