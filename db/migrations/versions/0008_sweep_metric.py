"""sweeps.metric: the leaderboard ranks each sweep by its own --metric

Revision ID: 0008
Revises: 0007

- ``sweeps.metric`` (macro_f1 | top1 | top2), filled for earlier sweeps from their spec.
- ``grid_leaderboard`` ranks by that metric; it keeps its columns and adds ``metric`` and
  ``val_metric`` (the ranked value) at the end.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The ranked value, spelled as a CASE so SQLite and PostgreSQL both run it.
VAL_METRIC = """CASE s.metric WHEN 'top1' THEN r.best_val_top1
                         WHEN 'top2' THEN r.best_val_top2
                         ELSE r.best_val_macro_f1 END"""

GRID_LEADERBOARD = f"""
CREATE VIEW grid_leaderboard AS
SELECT sc.sweep_id, sc.stage, sc.cell_index, sc.cell, sc.reused, j.id AS job_id, j.status,
       r.id AS run_id, r.best_epoch,
       r.best_val_macro_f1 AS val_macro_f1, r.best_val_top1 AS val_top1, r.best_val_top2 AS val_top2,
       r.test_macro_f1, r.test_top1, r.test_top2,
       RANK() OVER (PARTITION BY sc.sweep_id, sc.stage
                    ORDER BY CASE WHEN {VAL_METRIC} IS NULL THEN 1 ELSE 0 END, {VAL_METRIC} DESC) AS rank,
       s.metric, {VAL_METRIC} AS val_metric
FROM sweep_cells sc
JOIN sweeps s ON s.id = sc.sweep_id
JOIN jobs j ON j.id = sc.job_id
JOIN runs r ON r.id = sc.run_id
"""

METRICS = ("macro_f1", "top1", "top2")


def upgrade() -> None:
    op.execute("DROP VIEW grid_leaderboard")
    # ADD COLUMN in place (no batch copy: with foreign keys on, SQLite's table copy would cascade into sweep_cells).
    op.add_column("sweeps", sa.Column("metric", sa.String(length=16), server_default="macro_f1", nullable=False))
    sweeps = sa.table("sweeps", sa.column("id", sa.String), sa.column("spec", sa.JSON), sa.column("metric", sa.String))
    conn = op.get_bind()
    by_metric: dict[str, list[str]] = {}
    for sweep_id, spec in conn.execute(sa.select(sweeps.c.id, sweeps.c.spec)):
        spec = json.loads(spec) if isinstance(spec, str) else (spec or {})
        metric = spec.get("metric", "macro_f1")
        if metric != "macro_f1" and metric in METRICS:
            by_metric.setdefault(metric, []).append(sweep_id)
    for metric, ids in by_metric.items():
        for start in range(0, len(ids), 500):
            conn.execute(sweeps.update().where(sweeps.c.id.in_(ids[start : start + 500])).values(metric=metric))
    op.execute(GRID_LEADERBOARD)


def downgrade() -> None:
    import runpy
    from pathlib import Path

    op.execute("DROP VIEW grid_leaderboard")
    op.drop_column("sweeps", "metric")  # SQLite >= 3.35 drops a column in place
    old = runpy.run_path(str(Path(__file__).with_name("0004_grid_leaderboard_view.py")))
    op.execute(old["GRID_LEADERBOARD"])
