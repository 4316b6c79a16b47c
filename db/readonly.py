"""Read-only access for `atelier query`, enforced by the database connection.

No SQL parsing: SQLite opens the file with mode=ro and an authorizer that
allows only reads (so no PRAGMA, ATTACH or write can run, and the driver runs
one statement at a time); PostgreSQL runs one prepared statement (multiple
statements cannot be prepared) inside a READ ONLY transaction that is always
rolled back.

A time limit (``timeout`` seconds) ends a runaway statement: on SQLite a
progress handler that checks a deadline every few thousand VM instructions,
on PostgreSQL ``SET LOCAL statement_timeout`` in that same transaction.
"""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from core.errors import ConfigError

_SQLITE_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_PROGRESS_EVERY = 10_000  # VM instructions between deadline checks: one ~2 µs call per ~0.1 ms of SQL, ~2 % at worst


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_query(database_url: str, sql: str, limit: int | None = None, timeout: float | None = 60.0) -> QueryResult:
    """Run one read-only statement; ``timeout`` seconds (None: no limit) ends it with a ConfigError."""
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a positive number of seconds, not {timeout}")
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite(url.database, sql, limit, timeout)
    if backend == "postgresql":
        return _postgres(url, sql, limit, timeout)
    raise ConfigError(f"atelier query does not support {backend}")


def _timed_out(timeout: float) -> ConfigError:
    return ConfigError(
        f"query stopped after {timeout:g} s (--timeout {timeout:g}): "
        "narrow the query (a LIMIT, a WHERE) or raise --timeout"
    )


def _authorize(action, *_args) -> int:
    return sqlite3.SQLITE_OK if action in _SQLITE_ALLOWED else sqlite3.SQLITE_DENY


class _Deadline:
    """SQLite progress handler: a non-zero return aborts the statement ('interrupted')."""

    def __init__(self, timeout: float) -> None:
        self.at = time.monotonic() + timeout
        self.hit = False

    def __call__(self) -> int:
        self.hit = self.hit or time.monotonic() >= self.at
        return int(self.hit)


def _sqlite(path: str, sql: str, limit: int | None, timeout: float | None) -> QueryResult:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    deadline = _Deadline(timeout) if timeout is not None else None
    try:
        conn.set_authorizer(_authorize)
        if deadline:
            conn.set_progress_handler(deadline, _PROGRESS_EVERY)
        try:
            cur = conn.execute(sql)
            rows = cur.fetchmany(limit) if limit else cur.fetchall()
        except sqlite3.DatabaseError as err:
            if deadline and deadline.hit:
                raise _timed_out(timeout) from None
            raise ConfigError(f"query refused or failed: {err} (atelier query is read-only)") from None
        except sqlite3.ProgrammingError as err:
            raise ConfigError(f"query refused: {err}") from None
        return QueryResult([d[0] for d in cur.description or []], rows)
    finally:
        conn.set_progress_handler(None, 0)  # never leave a deadline on a connection
        conn.close()


def _postgres(url, sql: str, limit: int | None, timeout: float | None) -> QueryResult:
    import psycopg

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, options="-c default_transaction_read_only=on") as conn:
        conn.read_only = True
        try:
            with conn.cursor() as cur:
                if timeout is not None:  # LOCAL: ends with the transaction; in ms, 1 .. INT_MAX (0 means no limit)
                    ms = max(1, math.ceil(min(timeout * 1000, 2**31 - 1)))
                    cur.execute(f"SET LOCAL statement_timeout = {ms}")
                cur.execute(sql, prepare=True)
                rows = (cur.fetchmany(limit) if limit else cur.fetchall()) if cur.description else []
                columns = [d.name for d in cur.description or []]
        except psycopg.Error as err:
            if timeout is not None and isinstance(err, psycopg.errors.QueryCanceled):  # statement_timeout
                raise _timed_out(timeout) from None
            raise ConfigError(
                f"query refused or failed: {str(err).strip().splitlines()[0]} (atelier query is read-only)"
            ) from None
        finally:
            conn.rollback()
    return QueryResult(columns, [tuple(r) for r in rows])
