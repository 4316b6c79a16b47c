"""attributors and attributions: other attributors' answers on a batch's stored works (issue 31)

Revision ID: 0012
Revises: 0011

A stored batch can be shown to another classifier, or to a nearest-centroid attributor in a VGG space, without
stylizing again. ``attributors`` names each one and pins it; ``attributions`` holds one answer per (attributor,
stylization or control). The batch's own classification stays where it is (stylizations, style_controls).
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "attributors",
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_attributors_dataset_id_datasets")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_attributors")),
    )
    _create_attributions()


def _create_attributions() -> None:
    op.create_table(
        "attributions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attributor", sa.String(length=120), nullable=False),
        sa.Column("subject", sa.String(length=12), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("predicted", sa.String(length=200), nullable=False),
        sa.Column("probs", sa.JSON(), nullable=False),
        sa.Column("distances", sa.JSON(), nullable=True),
        sa.Column("near_content", sa.Double(), nullable=True),
        sa.Column("near_style", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attributor"], ["attributors.key"], name=op.f("fk_attributions_attributor_attributors"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_attributions_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attributions")),
        sa.UniqueConstraint("attributor", "subject", "subject_id", name=op.f("uq_attributions_attributor")),
    )
    with op.batch_alter_table("attributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attributions_attributor"), ["attributor"], unique=False)


def downgrade() -> None:
    op.drop_table("attributions")
    op.drop_table("attributors")
