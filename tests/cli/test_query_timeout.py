"""`atelier query --timeout` ends a runaway statement on SQLite with one line."""

import json
import sqlite3
import time

import pytest

from db import readonly
from tests.cli_run import assert_clean_exit, invoke

RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"


def run(env, *args):
    return invoke(args, env)  # fails on an exception the runner would keep out of the output


@pytest.fixture
def env(cli_env):
    assert run(cli_env, "db", "upgrade").exit_code == 0
    return cli_env


def test_runaway_query_stops_at_the_timeout(env):
    started = time.monotonic()
    r = run(env, "query", RUNAWAY, "--timeout", "1")
    elapsed = time.monotonic() - started
    assert_clean_exit(r, 1)
    assert [line for line in r.output.splitlines() if line.strip()] == [r.output.strip()]
    assert "query stopped after 1 s (--timeout 1)" in r.output
    assert elapsed < 15
    ok = run(env, "query", "SELECT count(*) AS n FROM jobs", "--format", "json", "--timeout", "1")
    assert ok.exit_code == 0 and json.loads(ok.stdout) == [{"n": 0}]


def test_bounded_recursive_query_within_the_timeout(env):
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 1000) SELECT count(*) AS n FROM c"
    r = run(env, "query", sql, "--format", "json")  # default --timeout 60
    assert r.exit_code == 0 and json.loads(r.stdout) == [{"n": 1000}]


@pytest.mark.parametrize("value,code", [("0", 2), ("-1", 2), ("abc", 2), ("nan", 1)])  # nan passes click's range
def test_timeout_must_be_positive(env, value, code):
    r = run(env, "query", "SELECT 1", "--timeout", value)
    assert_clean_exit(r, code)
    assert "--timeout" in r.output, r.output


def test_progress_handler_is_removed(env, monkeypatch):
    seen = []

    class Recording(sqlite3.Connection):
        def set_progress_handler(self, handler, n):
            seen.append(handler is not None)
            super().set_progress_handler(handler, n)

    connect = sqlite3.connect
    monkeypatch.setattr(readonly.sqlite3, "connect", lambda *a, **k: connect(*a, factory=Recording, **k))
    assert run(env, "query", "SELECT 1").exit_code == 0
    assert run(env, "query", RUNAWAY, "--timeout", "0.2").exit_code == 1
    assert seen == [True, False, True, False]
