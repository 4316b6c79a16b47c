"""Migration 0011 on SQLite and PostgreSQL: rows from before read steps_done and stop_reason as NULL (not
recorded), the views still read every row, new rows keep what they store, and the way back down keeps the rows."""

import pytest
from alembic import command
from sqlalchemy import text

from db.engine import make_engine
from db.migrate import alembic_config
from tests.integration.test_dose_migration import _seed_0009


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database(f"m0011_{tmp_path.name[-8:]}".lower())
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_older_rows_read_as_not_recorded_and_the_way_down_keeps_them(engine):
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0009")
    _seed_0009(engine)
    command.upgrade(cfg, "0011")
    with engine.begin() as c:
        old = c.execute(text("SELECT pair_hash, steps_done, stop_reason FROM stylizations ORDER BY pair_hash")).all()
        assert [tuple(r) for r in old] == [("h1", None, None), ("h2", None, None)]
        c.execute(
            text("UPDATE stylizations SET steps_done = 2, stop_reason = 'line search gave up' WHERE pair_hash = 'h2'")
        )
        assert c.execute(text("SELECT count(*) FROM attribution_pairs")).scalar() == 2
        stored = c.execute(text("SELECT steps, steps_done, stop_reason FROM stylizations WHERE pair_hash = 'h2'")).one()
    assert tuple(stored) == (3, 2, "line search gave up")
    command.downgrade(cfg, "0010")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM attribution_pairs")).scalar() == 2
        columns = c.execute(text("SELECT * FROM stylizations")).keys()
    assert "steps_done" not in columns and "stop_reason" not in columns
