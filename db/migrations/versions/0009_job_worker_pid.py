"""jobs.worker_pid: the process that ran a job

Revision ID: 0009
Revises: 0008

Workers keep one long-lived child per GPU between jobs, replaced after a CUDA OOM, an
unexpected error or past a memory limit; the pid of the child that claimed a job says
which jobs shared a process (a leak, a poisoned CUDA context) when one misbehaves.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A nullable column needs no table rebuild on SQLite (ALTER TABLE ADD COLUMN), so the views stay.
    op.add_column("jobs", sa.Column("worker_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "worker_pid")
