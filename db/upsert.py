"""Idempotent writes: INSERT ... ON CONFLICT DO UPDATE on SQLite and PostgreSQL.

A redelivered or resumed job writes the same rows again; the unique key makes
the second write replace the first instead of adding a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert(session: Session, model, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect]
    stmt = insert(model).values(list(rows))
    updated = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=updated))
