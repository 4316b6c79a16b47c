"""`atelier query` is read-only on PostgreSQL too, enforced by the connection."""

import json

import pytest
from sqlalchemy import text

from db import jobs
from db.engine import make_engine, make_sessionmaker
from db.models import Dataset
from tests.cli_run import assert_clean_exit, invoke

pytestmark = pytest.mark.postgres

# What the refused statements below would change, read back through a connection of the test's own (not
# the read-only path under test): a row in each table they write, and whether their new table exists.
TARGETS = {
    "jobs": "SELECT id, kind, status FROM jobs ORDER BY id",
    "datasets": "SELECT id, name, root FROM datasets ORDER BY id",
    "table t": "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'",
}


@pytest.fixture(scope="module")
def pg_env(pg_server, tmp_path_factory):
    url = pg_server.create_database("atelier_query")
    env = {"ATELIER_HOME": str(tmp_path_factory.mktemp("pgq")), "ATELIER_DATABASE_URL": url}
    assert_clean_exit(invoke(["db", "upgrade"], env))
    engine = make_engine(url)
    with make_sessionmaker(engine).begin() as s:  # rows a DELETE, DROP or UPDATE would take away
        s.add(Dataset(name="kept", root="/nowhere", format="folder", seed=0, split=[0.6, 0.2, 0.2], classes=["a"]))
        jobs.create_job(s, "train", {"dataset": "kept"})
    engine.dispose()
    return env


def target_tables(env) -> dict[str, list[tuple]]:
    engine = make_engine(env["ATELIER_DATABASE_URL"])
    try:
        with engine.connect() as c:
            return {name: [tuple(row) for row in c.execute(text(sql))] for name, sql in TARGETS.items()}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM jobs",
        "DROP TABLE jobs",
        "UPDATE jobs SET status = 'failed'",
        "CREATE TABLE t (a int)",
        "SELECT 1; DELETE FROM jobs",
        "COMMIT; DELETE FROM jobs",
        "WITH gone AS (DELETE FROM jobs RETURNING id) SELECT * FROM gone",
        "INSERT INTO datasets (name, root, format, seed, split, classes, created_at) VALUES ('x','/','f',0,'[]','[]',now())",
    ],
)
def test_writes_are_refused(pg_env, sql):
    before = target_tables(pg_env)
    assert len(before["jobs"]) == 1 and len(before["datasets"]) == 1 and before["table t"] == [(0,)], before
    r = invoke(["query", sql], pg_env)
    assert_clean_exit(r, 1)
    assert len(r.output.strip().splitlines()) == 1
    assert target_tables(pg_env) == before  # every table the statement targets is as it was


def test_runaway_query_stops_at_the_timeout(pg_env):
    import time

    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    started = time.monotonic()
    r = invoke(["query", runaway, "--timeout", "1"], pg_env)
    assert_clean_exit(r, 1)
    assert len(r.output.strip().splitlines()) == 1
    assert "query stopped after 1 s (--timeout 1)" in r.output
    assert time.monotonic() - started < 15
    ok = invoke(["query", "SELECT count(*) AS n FROM jobs", "--format", "json", "--timeout", "1"], pg_env)
    assert_clean_exit(ok)
    assert json.loads(ok.stdout) == [{"n": 1}]  # the connection still answers after the timeout
