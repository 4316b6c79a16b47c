"""`atelier demo` end to end at a small size: the README's first command, through its own worker process."""

import pytest
from click.testing import CliRunner

import analysis
from orchestrator.cli import cli
from tests.conftest import offline_env

pytestmark = pytest.mark.integration


def test_the_demo_shows_the_effect_it_exists_to_measure_and_writes_its_report(tmp_path, redis_server):
    env = offline_env(tmp_path) | {"ATELIER_BROKER_URL": redis_server.url(5)}
    # Small enough for the suite, large enough for the effect: a classifier that tells the synthetic
    # artists apart and 10 steps from the content image.
    small = ["--arch", "baseline-cnn", "--epochs", "3", "--image-size", "32", "--per-artist", "10"]
    small += ["--style-size", "24", "--style-steps", "10", "--dose", "0.01,100"]
    result = CliRunner().invoke(cli, ["demo", *small], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "30 pairs x 2 doses" in out and "--init content" in out  # one pair per cell of 6 artists
    assert "whom the classifier names" in out and "control (unstylized)" in out
    assert "attribution_by_weight" in out  # the same counts from the view, with its SQL
    (report,) = (tmp_path / "home").glob("report-batch-*/index.html")
    assert report.stat().st_size > 0
    # The table the demo printed, read back through the analysis: the content artist named at the
    # lowest dose, the style artist at the highest.
    url = f"sqlite:///{tmp_path / 'home' / 'atelier.db'}"
    table = analysis.attribution_table(analysis.load_batch(url, report.parent.name.removeprefix("report-batch-")))
    low, high = (table[(table["treatment"] == "dose") & (table["level"] == d)].iloc[0] for d in (0.01, 100.0))
    assert low["n"] >= 5 and low["content_rate"] > low["style_rate"], low.to_dict()
    assert high["style_rate"] > high["content_rate"], high.to_dict()
