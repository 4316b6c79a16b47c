"""grid_leaderboard view

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# One row per sweep cell, ranked by validation macro-F1 within its sweep and stage.
# Plain SQL that SQLite (>= 3.25, window functions) and PostgreSQL both run.
GRID_LEADERBOARD = """
CREATE VIEW grid_leaderboard AS
SELECT sc.sweep_id, sc.stage, sc.cell_index, sc.cell, sc.reused, j.id AS job_id, j.status,
       r.id AS run_id, r.best_epoch,
       r.best_val_macro_f1 AS val_macro_f1, r.best_val_top1 AS val_top1, r.best_val_top2 AS val_top2,
       r.test_macro_f1, r.test_top1, r.test_top2,
       RANK() OVER (PARTITION BY sc.sweep_id, sc.stage
                    ORDER BY CASE WHEN r.best_val_macro_f1 IS NULL THEN 1 ELSE 0 END, r.best_val_macro_f1 DESC) AS rank
FROM sweep_cells sc
JOIN jobs j ON j.id = sc.job_id
JOIN runs r ON r.id = sc.run_id
"""


def upgrade() -> None:
    op.execute(GRID_LEADERBOARD)


def downgrade() -> None:
    op.execute("DROP VIEW grid_leaderboard")
