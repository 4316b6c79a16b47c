"""Simulated batches at a real study's size: 8 artists × 2–3 test images, every image a content image of some pairs
and a style image of others, each pair at every dose. The truth is known, so intervals can be checked.

Among stylizations that name one of the pair's two artists, the style artist's log-odds are
    slope · log(dose / d50) + e_content_image + f_style_image + p_pair        (dose 0: NULL_LOGIT + the same effects)
with the image effects e, f ~ N(0, sd_image²) and a pair effect p ~ N(0, sd_pair²) that the pair's doses share (its
start). ``shared=True`` gives each image ONE effect for both roles (e_i = f_i: the dependence between an image's
two roles that a batch has); ``shared=False`` draws the roles independently. A share ``p_other`` of answers names
a third artist. Because every effect is symmetric around 0, the style artist is named as often as the content
artist at d50, marginally too, and the population rates below are the truth a rate's interval estimates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

from tests.unit.analysis.simulate import record

DOSES = (0.0, 0.1, 1.0, 10.0, 100.0, 1000.0)
NULL_LOGIT = -2.0


def pairs(rng, artists: int, images: int, per_style: int) -> list[tuple[int, int]]:
    """``per_style`` distinct (content image, style image) pairs per style artist, the content image drawn from
    the other artists' test images (as `atelier stylize` plans a batch)."""
    out = []
    for a in range(artists):
        possible = [(c, a * images + s) for s in range(images) for c in range(artists * images) if c // images != a]
        out += [possible[i] for i in rng.choice(len(possible), size=per_style, replace=False)]
    return out


def batch(
    seed: int,
    artists: int = 8,
    images: int = 2,
    per_style: int = 2,
    shared: bool = True,
    doses=DOSES,
    d50: float = 10.0,
    slope: float = 0.6,
    sd_image: float = 1.0,
    sd_pair: float = 0.5,
    p_other: float = 0.2,
) -> pd.DataFrame:
    """Records shaped as ``analysis.load_batch`` returns them, every answer with its controls named correctly."""
    rng = np.random.default_rng(seed)
    names = [f"A{i}" for i in range(artists)]
    e = rng.normal(0, sd_image, artists * images)
    f = e if shared else rng.normal(0, sd_image, artists * images)
    rows = []
    for k, (c, s) in enumerate(pairs(rng, artists, images, per_style)):
        a, b = s // images, c // images  # style artist, content artist
        start = rng.normal(0, sd_pair)
        for d in doses:
            eta = (slope * np.log(d / d50) if d > 0 else NULL_LOGIT) + e[c] + f[s] + start
            other = rng.random() < p_other
            style = rng.random() < expit(eta)
            outcome = "other" if other else ("style" if style else "content")
            predicted = names[(a + 1 + (a + 1 == b)) % artists] if other else names[a if style else b]
            share = expit(eta + rng.normal(0, 0.5))
            row = record(c, names[b], s, names[a], d, outcome, predicted, share)
            rows.append(row | {"pair_hash": f"{k}-{d:g}", "pair": f"{c}:{s}", "arm": "cross"})
    return pd.DataFrame(rows)


def truth(
    doses=DOSES, d50: float = 10.0, slope: float = 0.6, sd_image: float = 1.0, sd_pair: float = 0.5, p_other=0.2
) -> dict[float, dict[str, float]]:
    """The population rates per dose (over new images and new pairs): {dose: {'style': …, 'content': …}}."""
    z = np.random.default_rng(12345).standard_normal((3, 400_000))
    noise = sd_image * z[0] + sd_image * z[1] + sd_pair * z[2]  # two distinct images and a start
    out = {}
    for d in doses:
        p = float(expit((slope * np.log(d / d50) if d > 0 else NULL_LOGIT) + noise).mean())
        out[float(d)] = {"style": (1 - p_other) * p, "content": (1 - p_other) * (1 - p), "other": p_other}
    return out
