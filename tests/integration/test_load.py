"""Load at CI size: `python -m bench.load` itself, run at reduced size, then its store checked here.

The full-size figures (20,000 pairs in 500 jobs plus 1,000 cells) come from the same
script with its defaults. Running the script, not a copy of its flow, keeps the
benchmark working; the store is then checked independently of the script's own checks.
"""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tests.services import ROOT

pytestmark = pytest.mark.integration

PAIRS, STYLE_JOBS, CELLS = 200, 20, 40


def query(home, sql: str) -> list[dict]:
    from orchestrator.cli import cli

    result = CliRunner().invoke(
        cli, ["query", sql, "--format", "json"], env={"ATELIER_HOME": str(home)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_batch_and_grid_submitted_at_once_run_exactly_once(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATELIER_")}  # its own embedded lab
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--pairs",
            str(PAIRS),
            "--jobs",
            str(STYLE_JOBS),
            "--cells",
            str(CELLS),
            "--home",
            str(home),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])  # the figures, printed as one JSON line

    assert (figures["pairs"], figures["style_jobs"], figures["cells"]) == (PAIRS, STYLE_JOBS, CELLS)
    assert figures["exactly_once"] is True
    assert figures["submit_s"] < 10  # generous: CI boxes are slow and the workers already compete
    for rate in (
        "submit_pairs_per_s",
        "submit_cells_per_s",
        "jobs_per_s",
        "pairs_per_s",
        "queue_overhead_per_job_s",
        "ratio_end_to_end_over_baseline",
    ):
        assert figures[rate] > 0, rate

    # The script's own checks, again, against its store: nothing claimed twice, one row per pair and cell.
    jobs = query(home, "SELECT kind, status, attempts FROM jobs WHERE group_id IS NOT NULL")
    assert len(jobs) == STYLE_JOBS + 1 + CELLS == figures["jobs"]  # style chunks, the shared features job, cells
    assert {(j["status"], j["attempts"]) for j in jobs} == {("succeeded", 1)}
    (pairs,) = query(home, "SELECT count(*) AS n, count(DISTINCT pair_hash) AS distinct_pairs FROM stylizations")
    assert pairs == {"n": PAIRS, "distinct_pairs": PAIRS}
    (cells,) = query(
        home,
        "SELECT count(*) AS cells, count(DISTINCT c.run_id) AS runs, "
        "sum(CASE WHEN (SELECT count(*) FROM epoch_metrics m WHERE m.run_id = c.run_id) = 2 "
        "THEN 1 ELSE 0 END) AS trained FROM sweep_cells c",
    )
    assert cells == {"cells": CELLS, "runs": CELLS, "trained": CELLS}  # one train and one val row per run, no more
