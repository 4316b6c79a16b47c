"""Two attributors compared on the same stylizations (analysis.attributors): paired rates, the d50 ratio, and a
comparison with no shared works refused in one line."""

import numpy as np
import pandas as pd
import pytest

from analysis.attributors import compare_rates, d50_ratio, paired
from core.errors import ConfigError

LEVELS = (1.0, 3.0, 10.0, 30.0, 100.0)


def records(key: str, d50: float, seed: int, images: int = 12) -> pd.DataFrame:
    """Every ordered pair of ``images`` images (artist = image mod 3, cross-artist only) at every level, named the
    style artist with probability logistic(2·log(level / d50))."""
    rng = np.random.default_rng(seed)
    rows, sid = [], 0
    for c in range(images):
        for s in range(images):
            if c % 3 == s % 3:
                continue
            for level in LEVELS:
                sid += 1
                p = 1 / (1 + np.exp(-2 * np.log(level / d50)))
                style = rng.random() < p
                rows.append(
                    {
                        "stylization_id": sid, "level": level, "treatment": "dose", "content_image_id": c,
                        "style_image_id": s, "content_artist": f"a{c % 3}", "style_artist": f"a{s % 3}",
                        "outcome": "style" if style else "content", "arm": "cross", "content_correct": True,
                        "style_correct": True, "p_style": p, "p_content": 1 - p, "attributor": key,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_comparison_is_paired_on_the_same_works_and_the_d50_ratio_covers_the_truth():
    a, b = records("A", 3.0, 1), records("B", 30.0, 2)
    rates = compare_rates(a, b, "none")
    assert list(rates["level"]) == list(LEVELS) and (rates["n"] == len(a) / len(LEVELS)).all()
    assert np.allclose(rates["difference"], rates["style_a"] - rates["style_b"])
    assert rates.loc[rates["level"] == 10, "difference_low"].iloc[0] > 0  # A follows the style first
    ratio = d50_ratio(a, b, "none").set_index("outcome")
    named = ratio.loc["named"]
    assert named["ratio_low"] < 0.1 < named["ratio_high"] < 1  # the truth: 3 / 30
    assert named["d50_a"] == pytest.approx(3, rel=0.5) and named["d50_b"] == pytest.approx(30, rel=0.5)


def test_two_attributors_with_no_shared_works_are_refused_in_one_line():
    a, b = records("A", 3.0, 1), records("B", 30.0, 2)
    b["stylization_id"] += 10_000
    with pytest.raises(ConfigError, match="share no works") as err:
        paired(a, b)
    assert "\n" not in str(err.value)


def test_no_ratio_when_a_d50_lies_outside_the_tested_doses():
    """An attributor that names the style artist from the lowest dose on (as the style space does on real
    paintings) has a d50 far below the doses tested: the ratio to it would be a ratio of extrapolations."""
    a, b = records("A", 0.3, 1), records("B", 30.0, 2)
    ratio = d50_ratio(a, b, "none").set_index("outcome").loc["named"]
    assert ratio["d50_a"] < min(LEVELS) and np.isnan(ratio["ratio"]) and np.isnan(ratio["ratio_low"])
    assert "outside the doses tested (1–100)" in ratio["note"]
