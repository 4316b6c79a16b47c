"""weights registry, matched controls, the full record of every stylization

Revision ID: 0007
Revises: 0006

- ``weights``: every weight file a worker may load, kept under the artifacts root and
  known by its sha256, so a submit-time check on any host sees what every worker loads.
- ``runs.weights`` / ``runs.weights_sha256``: what a run's backbone started from.
- ``style_controls``: each content and style image of a batch classified after the same
  resize -> 8-bit PNG -> crop path as its stylizations (never the run's test predictions).
- ``stylizations`` gain init, pool, loss, seed, tv weight, the VGG weights' sha256, the
  VGG normalisation used and the achieved beta*style / alpha*content loss ratio;
  same-artist pairs get their own outcome, ``same``.
- the attribution views are rebuilt on the controls, stratified by style weight.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Every stylization of a batch with its outcome and both matched controls.
ATTRIBUTION_PAIRS = """
CREATE VIEW attribution_pairs AS
SELECT bp.batch_id, s.pair_hash, s.content_image_id, s.content_artist, s.style_image_id, s.style_artist,
       s.content_weight, s.style_weight, s.steps, s.size, s.init, s.pool, s.loss, s.optimizer, s.seed,
       s.vgg_weights, s.vgg_weights_sha256, s.vgg_norm, s.predicted, s.outcome,
       s.content_loss, s.style_loss, s.loss_ratio, s.image_path, s.classifier_run_id,
       cc.correct AS content_correct, sc.correct AS style_correct
FROM style_batch_pairs bp
JOIN stylizations s ON s.pair_hash = bp.pair_hash
LEFT JOIN style_controls cc
       ON cc.classifier_run_id = s.classifier_run_id AND cc.image_id = s.content_image_id AND cc.size = s.size
LEFT JOIN style_controls sc
       ON sc.classifier_run_id = s.classifier_run_id AND sc.image_id = s.style_image_id AND sc.size = s.size
"""

# Counts of stylizations and of the distinct pairs and images behind them (images recur across pairs).
COUNTS = """count(*) AS n,
       count(DISTINCT CAST(content_image_id AS TEXT) || ':' || CAST(style_image_id AS TEXT)) AS pairs,
       count(DISTINCT content_image_id) AS content_images,
       count(DISTINCT style_image_id) AS style_images,
       sum(CASE WHEN outcome = 'content' THEN 1 ELSE 0 END) AS content,
       sum(CASE WHEN outcome = 'style' THEN 1 ELSE 0 END) AS style,
       sum(CASE WHEN outcome = 'other' THEN 1 ELSE 0 END) AS other,
       avg(CASE WHEN outcome = 'content' THEN 1.0 ELSE 0.0 END) AS content_rate,
       avg(CASE WHEN outcome = 'style' THEN 1.0 ELSE 0.0 END) AS style_rate,
       avg(CASE WHEN outcome = 'other' THEN 1.0 ELSE 0.0 END) AS other_rate"""

# The default conditioning: cross-artist pairs whose content and style images the classifier
# recognises unstylized (through the same pipeline). Doses are strata: never pooled.
KEPT = "outcome <> 'same' AND content_correct AND style_correct"

BY_WEIGHT = f"""
CREATE VIEW attribution_by_weight AS
SELECT batch_id, style_weight, content_weight, {COUNTS}
FROM attribution_pairs WHERE {KEPT}
GROUP BY batch_id, style_weight, content_weight
"""

BY_PAIR = f"""
CREATE VIEW attribution_by_pair AS
SELECT batch_id, style_weight, style_artist, content_artist, {COUNTS}
FROM attribution_pairs WHERE {KEPT}
GROUP BY batch_id, style_weight, style_artist, content_artist
"""

VIEWS = ("attribution_by_pair", "attribution_by_weight", "attribution_pairs")


def upgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW {view}")
    op.create_table(
        "weights",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("arch", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("features_only", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_weights")),
        sa.UniqueConstraint("arch", "sha256", name=op.f("uq_weights_arch")),
    )
    op.create_index(op.f("ix_weights_arch_name"), "weights", ["arch", "name"])
    op.create_table(
        "style_controls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("classifier_run_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("predicted", sa.String(length=200), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("top3", sa.JSON(), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["classifier_run_id"],
            ["runs.id"],
            name=op.f("fk_style_controls_classifier_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_style_controls_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_style_controls")),
        sa.UniqueConstraint("classifier_run_id", "image_id", "size", name=op.f("uq_style_controls_classifier_run_id")),
    )
    with op.batch_alter_table("runs") as b:
        b.add_column(sa.Column("weights", sa.String(length=100), nullable=True))
        b.add_column(sa.Column("weights_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("stylizations") as b:
        # Rows written before this revision used the then defaults: content init, max pool, the tutorial's loss.
        b.add_column(sa.Column("init", sa.String(length=16), nullable=False, server_default="content"))
        b.add_column(sa.Column("pool", sa.String(length=8), nullable=False, server_default="max"))
        b.add_column(sa.Column("loss", sa.String(length=16), nullable=False, server_default="tutorial"))
        b.add_column(sa.Column("seed", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("tv_weight", sa.Double(), nullable=False, server_default="0"))
        b.add_column(sa.Column("vgg_weights_sha256", sa.String(length=64), nullable=True))
        b.add_column(sa.Column("vgg_norm", sa.String(length=64), nullable=False, server_default="none"))
        b.add_column(sa.Column("loss_ratio", sa.Double(), nullable=True))
    op.execute("UPDATE stylizations SET outcome = 'same' WHERE content_artist = style_artist")
    op.execute(ATTRIBUTION_PAIRS)
    op.execute(BY_WEIGHT)
    op.execute(BY_PAIR)


def downgrade() -> None:
    import runpy
    from pathlib import Path

    for view in VIEWS:
        op.execute(f"DROP VIEW {view}")
    with op.batch_alter_table("stylizations") as b:
        for col in ("loss_ratio", "vgg_norm", "vgg_weights_sha256", "tv_weight", "seed", "loss", "pool", "init"):
            b.drop_column(col)
    with op.batch_alter_table("runs") as b:
        b.drop_column("weights_sha256")
        b.drop_column("weights")
    op.drop_table("style_controls")
    op.drop_index(op.f("ix_weights_arch_name"), table_name="weights")
    op.drop_table("weights")
    old = runpy.run_path(str(Path(__file__).with_name("0006_attribution_views.py")))
    for sql in (old["ATTRIBUTION_PAIRS"], old["BY_WEIGHT"], old["BY_PAIR"]):
        op.execute(sql)
