"""scale-free doses, the classifier's probabilities and its pinned checkpoint

Revision ID: 0010
Revises: 0009

- ``stylizations`` gain ``dose`` (the scale-free dose; NULL for a raw-beta row, as every row
  written before this revision is), ``balance`` (beta*L_style / alpha*L_content at the pair's
  reference noise, before the optimisation), the classifier checkpoint's sha256, its
  probabilities (every class, and the content and style artists' as columns), its answers
  at 1/4, 1/2 and all of the steps, and the precision and device of the optimisation.
- ``style_controls`` gain the checkpoint's sha256, part of their key (a control answered by
  another checkpoint of the same run is another control), and the probabilities.
- ``attribution_pairs`` carries them, with ``treatment`` ('dose' or 'beta') and ``level``
  (the dose, or the raw beta): the views group by both, so a dose row and a raw-beta row
  never share a stratum. Controls join on the checkpoint too; rows from before this
  revision (no checkpoint recorded) join the controls that have none.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ATTRIBUTION_PAIRS = """
CREATE VIEW attribution_pairs AS
SELECT bp.batch_id, s.pair_hash, s.content_image_id, s.content_artist, s.style_image_id, s.style_artist,
       CASE WHEN s.dose IS NULL THEN 'beta' ELSE 'dose' END AS treatment,
       COALESCE(s.dose, s.style_weight) AS level,
       s.dose, s.balance, s.content_weight, s.style_weight, s.steps, s.size, s.init, s.pool, s.loss,
       s.optimizer, s.seed, s.vgg_weights, s.vgg_weights_sha256, s.vgg_norm, s.predicted, s.outcome,
       s.predicted_half, s.p_content, s.p_style, s.checkpoint_sha256, s.precision, s.device,
       s.content_loss, s.style_loss, s.loss_ratio, s.image_path, s.classifier_run_id,
       cc.correct AS content_correct, sc.correct AS style_correct,
       cc.predicted AS content_control_predicted, sc.predicted AS style_control_predicted
FROM style_batch_pairs bp
JOIN stylizations s ON s.pair_hash = bp.pair_hash
LEFT JOIN style_controls cc
       ON cc.classifier_run_id = s.classifier_run_id AND cc.image_id = s.content_image_id AND cc.size = s.size
      AND (cc.checkpoint_sha256 = s.checkpoint_sha256 OR (cc.checkpoint_sha256 IS NULL AND s.checkpoint_sha256 IS NULL))
LEFT JOIN style_controls sc
       ON sc.classifier_run_id = s.classifier_run_id AND sc.image_id = s.style_image_id AND sc.size = s.size
      AND (sc.checkpoint_sha256 = s.checkpoint_sha256 OR (sc.checkpoint_sha256 IS NULL AND s.checkpoint_sha256 IS NULL))
"""

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

KEPT = "outcome <> 'same' AND content_correct AND style_correct"

# One stratum per (treatment, level): a dose and a raw beta of the same number are different treatments.
BY_WEIGHT = f"""
CREATE VIEW attribution_by_weight AS
SELECT batch_id, treatment, level, content_weight, {COUNTS}
FROM attribution_pairs WHERE {KEPT}
GROUP BY batch_id, treatment, level, content_weight
"""

BY_PAIR = f"""
CREATE VIEW attribution_by_pair AS
SELECT batch_id, treatment, level, style_artist, content_artist, {COUNTS}
FROM attribution_pairs WHERE {KEPT}
GROUP BY batch_id, treatment, level, style_artist, content_artist
"""

VIEWS = ("attribution_by_pair", "attribution_by_weight", "attribution_pairs")
STYLIZATION_COLUMNS = (
    sa.Column("dose", sa.Double(), nullable=True),
    sa.Column("balance", sa.Double(), nullable=True),
    sa.Column("checkpoint_sha256", sa.String(length=64), nullable=True),
    sa.Column("probs", sa.JSON(), nullable=True),
    sa.Column("p_content", sa.Double(), nullable=True),
    sa.Column("p_style", sa.Double(), nullable=True),
    sa.Column("answers", sa.JSON(), nullable=True),
    sa.Column("predicted_half", sa.String(length=200), nullable=True),
    sa.Column("precision", sa.String(length=8), nullable=True),
    sa.Column("device", sa.String(length=16), nullable=True),
)


def upgrade() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW {view}")
    # Nullable columns: ALTER TABLE ADD COLUMN in place on both backends (old rows read NULL: raw beta, unpinned).
    for col in STYLIZATION_COLUMNS:
        op.add_column("stylizations", col)
    op.add_column("style_controls", sa.Column("checkpoint_sha256", sa.String(length=64), nullable=True))
    op.add_column("style_controls", sa.Column("probs", sa.JSON(), nullable=True))
    # The key gains the checkpoint. Nothing references style_controls, so SQLite's table copy is safe here.
    with op.batch_alter_table("style_controls") as b:
        b.drop_constraint("uq_style_controls_classifier_run_id", type_="unique")
        b.create_unique_constraint(
            "uq_style_controls_classifier_run_id", ["classifier_run_id", "checkpoint_sha256", "image_id", "size"]
        )
    op.execute(ATTRIBUTION_PAIRS)
    op.execute(BY_WEIGHT)
    op.execute(BY_PAIR)


def downgrade() -> None:
    import runpy
    from pathlib import Path

    for view in VIEWS:
        op.execute(f"DROP VIEW {view}")
    op.execute("DELETE FROM style_controls WHERE checkpoint_sha256 IS NOT NULL")  # the old key cannot hold them all
    with op.batch_alter_table("style_controls") as b:
        b.drop_constraint("uq_style_controls_classifier_run_id", type_="unique")
        b.create_unique_constraint("uq_style_controls_classifier_run_id", ["classifier_run_id", "image_id", "size"])
    for name in ("probs", "checkpoint_sha256"):
        op.drop_column("style_controls", name)
    for col in reversed(STYLIZATION_COLUMNS):
        op.drop_column("stylizations", col.name)
    old = runpy.run_path(str(Path(__file__).with_name("0007_weights_controls_study_record.py")))
    for view in ("ATTRIBUTION_PAIRS", "BY_WEIGHT", "BY_PAIR"):
        op.execute(old[view])
