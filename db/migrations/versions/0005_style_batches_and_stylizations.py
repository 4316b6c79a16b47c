"""style batches and stylizations

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 13:29:56.984296
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "style_batches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("classifier_run_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["classifier_run_id"], ["runs.id"], name=op.f("fk_style_batches_classifier_run_id_runs")
        ),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_style_batches_dataset_id_datasets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_style_batches")),
    )
    op.create_table(
        "style_batch_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("pair_hash", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["style_batches.id"],
            name=op.f("fk_style_batch_pairs_batch_id_style_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_style_batch_pairs_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_style_batch_pairs")),
        sa.UniqueConstraint("batch_id", "pair_hash", name=op.f("uq_style_batch_pairs_batch_id")),
    )
    with op.batch_alter_table("style_batch_pairs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_style_batch_pairs_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_style_batch_pairs_pair_hash"), ["pair_hash"], unique=False)

    op.create_table(
        "stylizations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_hash", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("content_image_id", sa.Integer(), nullable=False),
        sa.Column("content_artist", sa.String(length=200), nullable=False),
        sa.Column("style_image_id", sa.Integer(), nullable=False),
        sa.Column("style_artist", sa.String(length=200), nullable=False),
        sa.Column("content_weight", sa.Double(), nullable=False),
        sa.Column("style_weight", sa.Double(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("optimizer", sa.String(length=16), nullable=False),
        sa.Column("vgg_weights", sa.String(length=300), nullable=False),
        sa.Column("content_loss", sa.Double(), nullable=False),
        sa.Column("style_loss", sa.Double(), nullable=False),
        sa.Column("classifier_run_id", sa.Integer(), nullable=False),
        sa.Column("predicted", sa.String(length=200), nullable=False),
        sa.Column("top3", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["style_batches.id"], name=op.f("fk_stylizations_batch_id_style_batches")
        ),
        sa.ForeignKeyConstraint(
            ["classifier_run_id"], ["runs.id"], name=op.f("fk_stylizations_classifier_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["content_image_id"], ["images.id"], name=op.f("fk_stylizations_content_image_id_images")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_stylizations_job_id_jobs")),
        sa.ForeignKeyConstraint(["style_image_id"], ["images.id"], name=op.f("fk_stylizations_style_image_id_images")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stylizations")),
        sa.UniqueConstraint("pair_hash", name=op.f("uq_stylizations_pair_hash")),
    )
    with op.batch_alter_table("stylizations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stylizations_batch_id"), ["batch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stylizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stylizations_batch_id"))

    op.drop_table("stylizations")
    with op.batch_alter_table("style_batch_pairs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_style_batch_pairs_pair_hash"))
        batch_op.drop_index(batch_op.f("ix_style_batch_pairs_batch_id"))

    op.drop_table("style_batch_pairs")
    op.drop_table("style_batches")
