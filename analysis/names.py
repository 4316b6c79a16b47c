"""The analysis package's names, without its imports: the CLI builds its options from these at start-up, and
pandas and statsmodels load only when a command computes something."""

from __future__ import annotations

OUTCOMES = ("content", "style", "other")
# Which matched controls must be recognised for a pair to count: the conditioning is a choice, shown
# (docs/architecture.md, rule 9).
CONDITIONS = {
    "both": ("content_correct", "style_correct"),
    "content": ("content_correct",),
    "style": ("style_correct",),
    "none": (),
}
CONDITION_TEXT = {
    "both": "the classifier names both the content and the style image correctly unstylized",
    "content": "the classifier names the content image correctly unstylized",
    "style": "the classifier names the style image correctly unstylized",
    "none": "every cross-artist pair, whatever the classifier makes of the unstylized images",
}
# Conditionings that keep a pair only when its control (the unstylized content image) names the content artist:
# under them the control arm's content rate is 1 by construction, so a contrast against it is mechanical.
SELECTS_CONTROL = ("both", "content")
MECHANICAL_CONTROL = (
    "no contrast against the control under --condition {condition}: it keeps only pairs whose control names the "
    "content artist, so the control's content rate is 1 by construction and every difference from it would be ≤ 0 "
    "even if stylizing did nothing; the contrasts are against the lowest level on the same pairs "
    "(--condition none or style shows the control contrast)"
)
LEVEL_NAMES = {"dose": "dose", "beta": "β"}  # how a table labels a batch's treatment level
# Group keys of the attribution table beside (treatment, level): the level always comes first.
GROUPS = {
    "dose": (),
    "pair": ("style_artist", "content_artist"),
    "style-artist": ("style_artist",),
    "content-artist": ("content_artist",),
}
# Groups of the d50 fits.
D50_GROUPS = {
    "all": (),
    "style-artist": ("style_artist",),
    "content-artist": ("content_artist",),
    "pair": ("style_artist", "content_artist"),
}
