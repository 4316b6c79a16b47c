"""Migration 0008 on SQLite and PostgreSQL: earlier sweeps keep their --metric, the leaderboard ranks by
it, and the way back down loses no sweep cells (a SQLite table copy with foreign keys on would cascade)."""

import datetime

import pytest
from alembic import command
from sqlalchemy import MetaData, insert, text

from db.engine import make_engine
from db.migrate import alembic_config

NOW = datetime.datetime(2026, 1, 1)


def _seed_0007(engine) -> None:
    """One sweep per metric, two cells each: cell 0 has the better top-1, cell 1 the better top-2 and macro-F1."""
    md = MetaData()
    md.reflect(engine)
    t = md.tables
    with engine.begin() as c:
        c.execute(
            insert(t["datasets"]).values(
                id=1,
                name="d",
                root="/x",
                format="imagefolder",
                seed=0,
                split=[0.7, 0.15, 0.15],
                classes=["a", "b"],
                created_at=NOW,
            )
        )
        run_id = 0
        for metric in ("macro_f1", "top1", "top2"):
            c.execute(
                insert(t["sweeps"]).values(
                    id=metric,
                    dataset_id=1,
                    arch="resnet18",
                    spec={"metric": metric},
                    spec_hash="h",
                    finetune_top=0,
                    created_at=NOW,
                )
            )
            for cell, (top1, top2, f1) in enumerate([(0.9, 0.5, 0.2), (0.5, 0.9, 0.8)]):
                run_id += 1
                job = f"{metric}-{cell}"
                c.execute(
                    insert(t["jobs"]).values(
                        id=job,
                        kind="train",
                        queue="gpu",
                        params={},
                        params_hash="h",
                        status="succeeded",
                        attempts=1,
                        max_attempts=3,
                        created_at=NOW,
                        progress=1.0,
                    )
                )
                c.execute(
                    insert(t["runs"]).values(
                        id=run_id,
                        job_id=job,
                        dataset_id=1,
                        arch="resnet18",
                        config={},
                        created_at=NOW,
                        best_val_top1=top1,
                        best_val_top2=top2,
                        best_val_macro_f1=f1,
                    )
                )
                c.execute(
                    insert(t["sweep_cells"]).values(
                        sweep_id=metric, cell_index=cell, stage="grid", cell={}, job_id=job, run_id=run_id, reused=False
                    )
                )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_server").create_database(f"m0008_{tmp_path.name[-8:]}".lower())


@pytest.fixture
def engine(store_url):
    engine = make_engine(store_url)
    yield engine
    engine.dispose()  # before the server stops: no connection is left to be collected later


def test_leaderboard_ranks_each_sweep_by_its_metric_and_downgrades(engine):
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0007")
    _seed_0007(engine)
    command.upgrade(cfg, "0008")
    with engine.connect() as c:
        metrics = dict(c.execute(text("SELECT id, metric FROM sweeps")).all())
        best = dict(c.execute(text("SELECT sweep_id, cell_index FROM grid_leaderboard WHERE rank = 1")).all())
        row = c.execute(text("SELECT * FROM grid_leaderboard WHERE sweep_id = 'top2' AND rank = 1")).mappings().one()
    assert metrics == {"macro_f1": "macro_f1", "top1": "top1", "top2": "top2"}
    assert best == {"macro_f1": 1, "top1": 0, "top2": 1}
    assert (row["metric"], row["val_metric"], row["val_top2"], row["val_macro_f1"]) == ("top2", 0.9, 0.9, 0.8)
    command.downgrade(cfg, "0007")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM sweep_cells")).scalar() == 6
        best = dict(c.execute(text("SELECT sweep_id, cell_index FROM grid_leaderboard WHERE rank = 1")).all())
    assert best == {"macro_f1": 1, "top1": 1, "top2": 1}  # 0004's view: macro-F1 for every sweep
