"""Read-only access for `atelier query`, enforced by the database connection.

No SQL parsing: SQLite opens the file with mode=ro and an authorizer that
allows only reads (so no PRAGMA, ATTACH or write can run, and the driver runs
one statement at a time); PostgreSQL runs one prepared statement (multiple
statements cannot be prepared) inside a READ ONLY transaction that is always
rolled back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from core.errors import ConfigError

_SQLITE_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def run_query(database_url: str, sql: str, limit: int | None = None) -> QueryResult:
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite(url.database, sql, limit)
    if backend == "postgresql":
        return _postgres(url, sql, limit)
    raise ConfigError(f"atelier query does not support {backend}")


def _authorize(action, *_args) -> int:
    return sqlite3.SQLITE_OK if action in _SQLITE_ALLOWED else sqlite3.SQLITE_DENY


def _sqlite(path: str, sql: str, limit: int | None) -> QueryResult:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.set_authorizer(_authorize)
        try:
            cur = conn.execute(sql)
            rows = cur.fetchmany(limit) if limit else cur.fetchall()
        except sqlite3.DatabaseError as err:
            raise ConfigError(f"query refused or failed: {err} (atelier query is read-only)") from None
        except sqlite3.ProgrammingError as err:
            raise ConfigError(f"query refused: {err}") from None
        return QueryResult([d[0] for d in cur.description or []], rows)
    finally:
        conn.close()


def _postgres(url, sql: str, limit: int | None) -> QueryResult:
    import psycopg

    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, options="-c default_transaction_read_only=on") as conn:
        conn.read_only = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, prepare=True)
                rows = (cur.fetchmany(limit) if limit else cur.fetchall()) if cur.description else []
                columns = [d.name for d in cur.description or []]
        except psycopg.Error as err:
            raise ConfigError(f"query refused or failed: {str(err).strip().splitlines()[0]} (atelier query is read-only)") from None
        finally:
            conn.rollback()
    return QueryResult(columns, [tuple(r) for r in rows])
