"""training state, test metrics, predictions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:28:55.630542
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("predicted", sa.String(length=200), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("top3", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_predictions_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_predictions_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
        sa.UniqueConstraint("run_id", "image_id", name=op.f("uq_predictions_run_id")),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_predictions_run_id"), ["run_id"], unique=False)

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state_path", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_epoch", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("test_per_class_f1", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("test_confusion", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("test_confusion")
        batch_op.drop_column("test_per_class_f1")
        batch_op.drop_column("last_epoch")
        batch_op.drop_column("state_path")

    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_predictions_run_id"))

    op.drop_table("predictions")
