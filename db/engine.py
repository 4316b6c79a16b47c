"""Engines and sessions for SQLite (embedded) and PostgreSQL (cluster).

SQLite is used by several processes at once (CLI, workers), so it runs in WAL
mode with a busy timeout, and every transaction starts with BEGIN IMMEDIATE:
a deferred transaction that later upgrades to a write can fail at once with
SQLITE_BUSY instead of waiting, which would surface as random job failures.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

BUSY_TIMEOUT_MS = 30_000


def _json(obj) -> str:
    # Unicode artist names stay readable in `atelier query` output.
    return json.dumps(obj, ensure_ascii=False)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, json_serializer=_json)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=_json)


def private_file(path: Path) -> None:
    """Create ``path``'s folder 0700 and the file 0600 when they do not exist yet (every result of a study is
    in it: on a shared GPU box other users must not read it); SQLite gives its -wal and -shm files the
    database file's mode. Existing folders and files keep the mode their owner gave them."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows stay readable after the block that wrote them.
    return sessionmaker(engine, expire_on_commit=False)


IN_LIST_MAX = 500  # values per IN (...): far below any driver's bound-parameter limit (old SQLite: 999)


def one_snapshot(session) -> None:
    """Let every statement of the session's transaction read the same data. PostgreSQL's default (READ COMMITTED)
    gives each statement its own snapshot, so a worker finishing a pair between two reads would make them disagree;
    a SQLite transaction reads one snapshot already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    if session.in_transaction():  # a caller already began it: fine if it is one snapshot already (nested readers)
        if session.connection().get_isolation_level() == "REPEATABLE READ":
            return
        raise RuntimeError("one_snapshot must come before the session's first statement")
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def in_slices(values: list) -> list[list]:
    """``values`` cut into lists short enough for one ``IN (...)`` each."""
    return [values[start : start + IN_LIST_MAX] for start in range(0, len(values), IN_LIST_MAX)]
