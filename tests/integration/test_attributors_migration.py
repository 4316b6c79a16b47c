"""Migration 0012 on SQLite and PostgreSQL: the attributors and attributions tables come in beside the rows of
before (which stay the batch's own answers), one answer per (attributor, subject, id), and the way back down drops
the two tables and keeps every other row."""

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from db.engine import make_engine
from db.migrate import alembic_config
from tests.integration.test_dose_migration import _seed_0009


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database(f"m0012_{tmp_path.name[-8:]}".lower())
    engine = make_engine(url)
    yield engine
    engine.dispose()


ANSWER = (
    "INSERT INTO attributions (attributor, subject, subject_id, job_id, predicted, probs, created_at) "
    "VALUES ('style-space@0123456789ab', 'stylization', 1, 'j', 'a', '{\"a\": 0.6, \"b\": 0.4}', '2026-01-01')"
)


def test_answers_are_one_per_attributor_and_picture_and_the_way_down_keeps_the_batch(engine):
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0009")
    _seed_0009(engine)
    command.upgrade(cfg, "0012")
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO attributors (key, kind, dataset_id, classes, spec, created_at) VALUES "
                "('style-space@0123456789ab', 'style-space', 1, '[\"a\", \"b\"]', '{}', '2026-01-01')"
            )
        )
        c.execute(text(ANSWER))
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text(ANSWER))  # the same attributor on the same picture: one row (the worker upserts)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM attributions")).scalar() == 1
        before = c.execute(text("SELECT count(*) FROM attribution_pairs")).scalar()
    command.downgrade(cfg, "0011")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM attribution_pairs")).scalar() == before == 2
        tables = set(c.dialect.get_table_names(c))
    assert not {"attributors", "attributions"} & tables
