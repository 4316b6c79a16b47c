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
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from orchestrator.stats import OUTCOMES, chance_levels, cluster_bootstrap, wilson_interval
from core.errors import ConfigError

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


def pairs_sql(condition: str) -> str:
    """The query behind every table: a batch's cross-artist stylizations that pass the conditioning."""
    if condition not in CONDITIONS:
        raise ConfigError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    return f"SELECT * FROM attribution_pairs WHERE batch_id = :batch AND outcome <> 'same' AND {CONDITIONS[condition]}"


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


def strata(rows: list[dict], by: str = "style-weight", resamples: int = 2000, seed: int = 0) -> list[Stratum]:
    """Group cross-artist rows by ``by`` (always within a dose) and give each group its counts and intervals."""
    if by not in GROUPS:
        raise ConfigError(f"unknown grouping {by!r}; choose from {', '.join(GROUPS)}")
    if any(r["outcome"] == "same" for r in rows):
        raise ConfigError("same-artist stylizations cannot be pooled with cross-artist ones")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in GROUPS[by]), []).append(r)
    out = []
    for key in sorted(groups, key=lambda k: (float(k[0]), *map(str, k[1:]))):
        members = groups[key]
        outcomes = [r["outcome"] for r in members]
        counts = {o: outcomes.count(o) for o in OUTCOMES}
        ratios = [r["loss_ratio"] for r in members if r.get("loss_ratio") is not None]
        out.append(Stratum(
            key=key, n=len(members),
            pairs=len({(r["content_image_id"], r["style_image_id"]) for r in members}),
            content_images=len({r["content_image_id"] for r in members}),
            style_images=len({r["style_image_id"] for r in members}),
            counts=counts,
            wilson={o: wilson_interval(counts[o], len(members)) for o in OUTCOMES},
            bootstrap=cluster_bootstrap(outcomes, [r["content_image_id"] for r in members], resamples, seed),
            median_loss_ratio=statistics.median(ratios) if ratios else None,
        ))
    return out


def chance_text(k: int) -> str:
    c = chance_levels(k)
    return f"chance for {k} artists: content {c['content']:.2f}, style {c['style']:.2f}, other {c['other']:.2f}"
