"""sweeps and job groups

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 12:33:33.611757
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("arch", sa.String(length=40), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("finetune_top", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_sweeps_dataset_id_datasets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweeps")),
    )
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweeps_spec_hash"), ["spec_hash"], unique=False)

    op.create_table(
        "sweep_cells",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.String(length=36), nullable=False),
        sa.Column("cell_index", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("cell", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("reused", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_sweep_cells_job_id_jobs")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_sweep_cells_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name=op.f("fk_sweep_cells_sweep_id_sweeps"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sweep_cells")),
        sa.UniqueConstraint("sweep_id", "cell_index", "stage", name=op.f("uq_sweep_cells_sweep_id")),
    )
    with op.batch_alter_table("sweep_cells", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sweep_cells_sweep_id"), ["sweep_id"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("depends_on", sa.String(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_depends_on"), ["depends_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_group_id"), ["group_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_depends_on_jobs"), "jobs", ["depends_on"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_depends_on_jobs"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_jobs_group_id"))
        batch_op.drop_index(batch_op.f("ix_jobs_depends_on"))
        batch_op.drop_column("depends_on")
        batch_op.drop_column("group_id")

    with op.batch_alter_table("sweep_cells", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sweep_cells_sweep_id"))

    op.drop_table("sweep_cells")
    with op.batch_alter_table("sweeps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sweeps_spec_hash"))

    op.drop_table("sweeps")
