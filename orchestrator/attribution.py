"""The attribution analysis of a style batch, as pure functions over the rows of ``attribution_pairs``.

The research design (DESIGN.md, "Research design of the attribution study"):
- each stylization is named content (artist B), style (artist A) or other; same-artist
  pairs are their own outcome and never reach an aggregate (the SQL leaves them out);
- a pair counts only if the classifier recognises its unstylized images on the same
  resize -> 8-bit -> crop path (``--condition``, default both images);
- doses are strata, never pooled: every group key starts with the style weight;
- content and style images recur across pairs, so each rate gets a cluster bootstrap
  over content images beside the per-cell Wilson interval, and every stratum says how
  many distinct pairs and images are behind it.

The counts of each stratum come from SQL (``counts_sql``): the views ``attribution_by_weight``
and ``attribution_by_pair`` for the default conditioning, the same GROUP BY over
``attribution_pairs`` otherwise. The cluster bootstrap and the median loss ratio, which SQL
cannot give on both backends, are computed here from the stratum's rows (``pairs_sql``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from core.errors import ConfigError
from orchestrator.stats import OUTCOMES, chance_levels, cluster_bootstrap, wilson_interval

# Which matched controls must be recognised for a pair to count: SQL over attribution_pairs.
CONDITIONS = {
    "both": "content_correct AND style_correct",
    "content": "content_correct",
    "style": "style_correct",
    "none": "1 = 1",
}
CONDITION_TEXT = {
    "both": "the classifier names both the content and the style image correctly unstylized",
    "content": "the classifier names the content image correctly unstylized",
    "style": "the classifier names the style image correctly unstylized",
    "none": "every cross-artist pair, whatever the classifier makes of the unstylized images",
}
# Group keys; the style weight always comes first: doses are never pooled.
GROUPS = {
    "style-weight": ("style_weight",),
    "pair": ("style_weight", "style_artist", "content_artist"),
    "style-artist": ("style_weight", "style_artist"),
    "content-artist": ("style_weight", "content_artist"),
}


# The views of migration 0007 that hold a batch's counts under the default conditioning ("both"), per grouping.
VIEWS = {"style-weight": "attribution_by_weight", "pair": "attribution_by_pair"}
# A stratum's counts as those views spell them: stylizations, distinct pairs and images, each outcome.
COUNTS = (
    "count(*) AS n, "
    "count(DISTINCT CAST(content_image_id AS TEXT) || ':' || CAST(style_image_id AS TEXT)) AS pairs, "
    "count(DISTINCT content_image_id) AS content_images, count(DISTINCT style_image_id) AS style_images, "
    + ", ".join(f"sum(CASE WHEN outcome = '{o}' THEN 1 ELSE 0 END) AS {o}" for o in OUTCOMES)
)


def pairs_sql(condition: str) -> str:
    """The rows behind every table: a batch's cross-artist stylizations that pass the conditioning."""
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    return f"SELECT * FROM attribution_pairs WHERE batch_id = :batch AND outcome <> 'same' AND {CONDITIONS[condition]}"


def counts_sql(condition: str, by: str) -> str:
    """A batch's counts per stratum: the view that holds them (default conditioning, per dose or per dose and
    artist pair), else the same GROUP BY over the rows of ``pairs_sql``. Rows carry the GROUPS keys and COUNTS."""
    rows = pairs_sql(condition)
    if by not in GROUPS:
        raise ConfigError(f"unknown grouping {by!r}; choose from {', '.join(GROUPS)}")
    if condition == "both" and by in VIEWS:
        return f"SELECT * FROM {VIEWS[by]} WHERE batch_id = :batch"
    keys = ", ".join(GROUPS[by])
    return f"SELECT {keys}, {COUNTS} FROM ({rows}) AS kept GROUP BY {keys}"


@dataclass(frozen=True)
class Stratum:
    key: tuple  # (style_weight, ...) as GROUPS names it
    n: int  # stylizations
    pairs: int  # distinct (content image, style image)
    content_images: int
    style_images: int
    counts: dict[str, int]  # per outcome
    wilson: dict[str, tuple[float, float]]  # per cell, as if every stylization were independent
    bootstrap: dict[str, tuple[float, float]]  # resampling content images: the interval to report
    median_loss_ratio: float | None  # achieved beta*style / alpha*content

    def rate(self, outcome: str) -> float:
        return self.counts[outcome] / self.n if self.n else 0.0


def strata(
    counts: list[dict], rows: list[dict], by: str = "style-weight", resamples: int = 2000, seed: int = 0
) -> list[Stratum]:
    """Each stratum of ``counts`` (rows of ``counts_sql``, always within a dose) with its intervals: Wilson from
    its counts; the cluster bootstrap and the median loss ratio from its stylizations in ``rows`` (``pairs_sql``)."""
    if by not in GROUPS:
        raise ConfigError(f"unknown grouping {by!r}; choose from {', '.join(GROUPS)}")
    if any(r["outcome"] == "same" for r in rows):
        raise ConfigError("same-artist stylizations cannot be pooled with cross-artist ones")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in GROUPS[by]), []).append(r)
    counted = {tuple(c[k] for k in GROUPS[by]): c for c in counts}
    if (
        len(counted) != len(counts)
        or set(counted) != set(groups)
        or any(counted[k]["n"] != len(groups[k]) for k in groups)
    ):
        raise RuntimeError(
            f"the counts per {by} ({len(counts)} strata, {sum(c['n'] for c in counts)} stylizations) "
            f"disagree with the rows ({len(groups)} strata, {len(rows)} stylizations)"
        )
    out = []
    for key in sorted(groups, key=lambda k: (float(k[0]), *map(str, k[1:]))):
        c, members = counted[key], groups[key]
        ratios = [r["loss_ratio"] for r in members if r.get("loss_ratio") is not None]
        out.append(
            Stratum(
                key=key,
                n=c["n"],
                pairs=c["pairs"],
                content_images=c["content_images"],
                style_images=c["style_images"],
                counts={o: c[o] for o in OUTCOMES},
                wilson={o: wilson_interval(c[o], c["n"]) for o in OUTCOMES},
                bootstrap=cluster_bootstrap(
                    [r["outcome"] for r in members], [r["content_image_id"] for r in members], resamples, seed
                ),
                median_loss_ratio=statistics.median(ratios) if ratios else None,
            )
        )
    return out


def chance_text(k: int) -> str:
    c = chance_levels(k)
    return f"chance for {k} artists: content {c['content']:.2f}, style {c['style']:.2f}, other {c['other']:.2f}"
