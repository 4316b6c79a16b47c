"""`atelier demo` end to end at a tiny size: the README's first command, through its own worker process."""

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from tests.conftest import offline_env

pytestmark = pytest.mark.integration


def test_the_demo_runs_the_study_and_writes_its_report(tmp_path, redis_server):
    env = offline_env(tmp_path) | {"ATELIER_BROKER_URL": redis_server.url(5)}
    tiny = ["--arch", "baseline-cnn", "--epochs", "1", "--image-size", "32", "--per-artist", "6"]
    tiny += ["--style-size", "24", "--style-steps", "2", "--dose", "0.01,100"]
    result = CliRunner().invoke(cli, ["demo", *tiny], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "30 pairs x 2 doses" in out and "--init content" in out  # one pair per cell of 6 artists
    assert "whom the classifier names" in out and "control (unstylized)" in out
    assert "attribution_by_weight" in out  # the same counts from the view, with its SQL
    (report,) = (tmp_path / "home").glob("report-batch-*/index.html")
    assert report.stat().st_size > 0
