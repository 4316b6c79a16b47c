"""attribution views

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Every pair of a batch with its outcome, and whether the classifier named the
# *unstylized* content image correctly (so classifier error can be told apart
# from the effect of style).
ATTRIBUTION_PAIRS = """
CREATE VIEW attribution_pairs AS
SELECT bp.batch_id, s.pair_hash, s.content_image_id, s.content_artist, s.style_image_id, s.style_artist,
       s.content_weight, s.style_weight, s.steps, s.predicted, s.outcome, s.content_loss, s.style_loss,
       s.image_path, s.classifier_run_id, p.correct AS content_correct
FROM style_batch_pairs bp
JOIN stylizations s ON s.pair_hash = bp.pair_hash
LEFT JOIN predictions p ON p.run_id = s.classifier_run_id AND p.image_id = s.content_image_id
"""

COUNTS = """count(*) AS n,
       sum(CASE WHEN outcome = 'content' THEN 1 ELSE 0 END) AS content,
       sum(CASE WHEN outcome = 'style' THEN 1 ELSE 0 END) AS style,
       sum(CASE WHEN outcome = 'other' THEN 1 ELSE 0 END) AS other,
       avg(CASE WHEN outcome = 'content' THEN 1.0 ELSE 0.0 END) AS content_rate,
       avg(CASE WHEN outcome = 'style' THEN 1.0 ELSE 0.0 END) AS style_rate,
       avg(CASE WHEN outcome = 'other' THEN 1.0 ELSE 0.0 END) AS other_rate"""

# Only pairs whose unstylized content image was classified correctly.
BY_WEIGHT = f"""
CREATE VIEW attribution_by_weight AS
SELECT batch_id, style_weight, content_weight, {COUNTS}
FROM attribution_pairs WHERE content_correct
GROUP BY batch_id, style_weight, content_weight
"""

BY_PAIR = f"""
CREATE VIEW attribution_by_pair AS
SELECT batch_id, style_artist, content_artist, {COUNTS}
FROM attribution_pairs WHERE content_correct
GROUP BY batch_id, style_artist, content_artist
"""


def upgrade() -> None:
    op.execute(ATTRIBUTION_PAIRS)
    op.execute(BY_WEIGHT)
    op.execute(BY_PAIR)


def downgrade() -> None:
    for view in ("attribution_by_pair", "attribution_by_weight", "attribution_pairs"):
        op.execute(f"DROP VIEW {view}")
