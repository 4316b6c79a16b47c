"""`atelier query` is read-only on PostgreSQL too, enforced by the connection."""

import json

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_env(pg_server, tmp_path_factory):
    url = pg_server.create_database("atelier_query")
    env = {"ATELIER_HOME": str(tmp_path_factory.mktemp("pgq")), "ATELIER_DATABASE_URL": url}
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    return env


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM jobs",
        "DROP TABLE jobs",
        "CREATE TABLE t (a int)",
        "SELECT 1; DELETE FROM jobs",
        "COMMIT; DELETE FROM jobs",
        "WITH gone AS (DELETE FROM jobs RETURNING id) SELECT * FROM gone",
        "INSERT INTO datasets (name, root, format, seed, split, classes, created_at) VALUES ('x','/','f',0,'[]','[]',now())",
    ],
)
def test_writes_are_refused(pg_env, sql):
    r = CliRunner().invoke(cli, ["query", sql], env=pg_env)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    ok = CliRunner().invoke(cli, ["query", "SELECT count(*) AS n FROM alembic_version", "--format", "json"], env=pg_env)
    assert json.loads(ok.stdout) == [{"n": 1}]


def test_runaway_query_stops_at_the_timeout(pg_env):
    import time

    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    started = time.monotonic()
    r = CliRunner().invoke(cli, ["query", runaway, "--timeout", "1"], env=pg_env)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert "query stopped after 1 s (--timeout 1)" in r.output
    assert time.monotonic() - started < 15
    ok = CliRunner().invoke(
        cli, ["query", "SELECT count(*) AS n FROM alembic_version", "--format", "json", "--timeout", "1"], env=pg_env
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout) == [{"n": 1}]
