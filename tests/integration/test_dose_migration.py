"""Migration 0010 on SQLite and PostgreSQL: rows from before read as what they are (raw beta, no dose, no
checkpoint), still join their controls, never share a stratum with dose rows, and the way back down works."""

import datetime

import pytest
from alembic import command
from sqlalchemy import MetaData, insert, text

from db.engine import make_engine
from db.migrate import alembic_config

NOW = datetime.datetime(2026, 1, 1)


def _seed_0009(engine) -> None:
    """One finished run, one style batch of two raw-beta stylizations and both images' controls."""
    md = MetaData()
    md.reflect(engine)
    t = md.tables
    with engine.begin() as c:
        c.execute(
            insert(t["datasets"]).values(
                id=1, name="d", root="/x", format="imagefolder", seed=0, split=[0.7, 0.15, 0.15],
                classes=["a", "b"], created_at=NOW,
            )
        )  # fmt: skip
        for i, label in ((1, "a"), (2, "b")):
            c.execute(
                insert(t["images"]).values(
                    id=i, dataset_id=1, path=f"{label}/{i}.png", label=label, split="test", status="ok",
                    width=8, height=8, sha256=str(i) * 64, attrs={},
                )
            )  # fmt: skip
        c.execute(
            insert(t["jobs"]).values(
                id="j", kind="train", queue="gpu", params={}, params_hash="h", status="succeeded", attempts=1,
                max_attempts=3, created_at=NOW, progress=1.0,
            )
        )  # fmt: skip
        c.execute(insert(t["runs"]).values(id=1, job_id="j", dataset_id=1, arch="r", config={}, created_at=NOW))
        c.execute(insert(t["style_batches"]).values(id="b", dataset_id=1, classifier_run_id=1, spec={}, created_at=NOW))
        for i, label in ((1, "a"), (2, "b")):
            c.execute(
                insert(t["style_controls"]).values(
                    classifier_run_id=1, image_id=i, size=24, label=label, predicted=label, correct=True, top3=[],
                    image_path="c.png", created_at=NOW,
                )
            )  # fmt: skip
        for h, beta in (("h1", 0.0), ("h2", 1e3)):
            c.execute(insert(t["style_batch_pairs"]).values(batch_id="b", pair_hash=h, job_id="j"))
            c.execute(
                insert(t["stylizations"]).values(
                    pair_hash=h, batch_id="b", job_id="j", content_image_id=1, content_artist="a",
                    style_image_id=2, style_artist="b", content_weight=1.0, style_weight=beta, steps=3, size=24,
                    optimizer="lbfgs", vgg_weights="random", content_loss=1.0, style_loss=1.0,
                    classifier_run_id=1, predicted="a", top3=[], outcome="content", image_path="s.png",
                    created_at=NOW,
                )
            )  # fmt: skip


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database(f"m0010_{tmp_path.name[-8:]}".lower())
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_older_rows_read_as_raw_betas_and_the_way_down_keeps_them(engine):
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0009")
    _seed_0009(engine)
    command.upgrade(cfg, "0010")
    with engine.connect() as c:
        rows = c.execute(text("SELECT * FROM attribution_pairs ORDER BY level")).mappings().all()
        strata = c.execute(text("SELECT treatment, level, n FROM attribution_by_weight ORDER BY level")).all()
    assert [(r["treatment"], r["level"], r["dose"], r["checkpoint_sha256"]) for r in rows] == [
        ("beta", 0.0, None, None),
        ("beta", 1e3, None, None),
    ]
    assert all(r["content_correct"] and r["style_correct"] for r in rows)  # unpinned rows join unpinned controls
    assert [tuple(s) for s in strata] == [("beta", 0.0, 1), ("beta", 1e3, 1)]
    with engine.begin() as c:  # the same image, size and run, answered by a pinned checkpoint: another control
        c.execute(
            text(
                "INSERT INTO style_controls (classifier_run_id, image_id, size, label, predicted, correct, top3, "
                "image_path, created_at, checkpoint_sha256) VALUES (1, 1, 24, 'a', 'b', false, '[]', 'p.png', "
                ":now, :sha)"
            ),
            {"now": NOW, "sha": "f" * 64},
        )
    command.downgrade(cfg, "0009")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM attribution_pairs")).scalar() == 2
        assert c.execute(text("SELECT count(*) FROM style_controls")).scalar() == 2
