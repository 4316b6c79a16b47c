"""stylizations.steps_done and stop_reason: the steps a stylization actually took, and why it stopped

Revision ID: 0011
Revises: 0010

The optimisers stop a pair before its steps run out when its line search finds no decrease even for a small
steepest-descent step ('line search gave up'), or, without a line search, when its loss is not finite at every
trial ('loss not finite'); otherwise it ran them all ('steps done'). The attribution table counts the rows that
did not run their steps. Rows written before this revision read NULL: not recorded, never counted as early.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = (
    sa.Column("steps_done", sa.Integer(), nullable=True),
    sa.Column("stop_reason", sa.String(length=24), nullable=True),
)


def upgrade() -> None:
    # Nullable columns: ALTER TABLE ADD COLUMN in place on both backends; the views name their columns, so they
    # stay as they are (the analysis reads these two from the table, beside the view's rows).
    for col in COLUMNS:
        op.add_column("stylizations", col)


def downgrade() -> None:
    for col in reversed(COLUMNS):
        op.drop_column("stylizations", col.name)
