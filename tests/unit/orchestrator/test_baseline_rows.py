"""The baselines table names its null arm by the level it really is: dose 0 when the batch has one, else its
lowest level (the demo's batch starts at 0.01), never a "dose 0" it does not hold."""

import pandas as pd
import pytest

from orchestrator.reports.attribution import Study, baseline_rows


def study(null_level: float) -> Study:
    rates = {f"{kind}_{o}_{part}": 0.25 for kind in ("equal_weight", "unconditioned") for o in ("style",)
             for part in ("rate", "low", "high")}  # fmt: skip
    row = {
        "treatment": "dose",
        "level": 1.0,
        "null_level": null_level,
        "null_style_rate": 0.125,
        "control_content_rate": 0.75,
        "control_style_rate": 0.0,
        "confused_content_as_style": 0.05,
        "chance_uniform": 0.25,
        "pairs_kept": 3,
        "pairs_all": 4,
        "kept_fraction": 0.75,
        "same_artist_named": 0.5,
        "same_artist_low": 0.2,
        "same_artist_high": 0.8,
        "same_artist_note": "",
        **rates,
    }
    info = {"treatment": "dose"}
    return Study(info, pd.DataFrame(), pd.DataFrame(), [], "none", baselines=pd.DataFrame([row]))


@pytest.mark.parametrize("null_level", [0.0, 0.01])
def test_the_null_arm_is_named_by_its_level(null_level):
    head, rows = baseline_rows(study(null_level))
    column = head.index("lowest dose: style")
    assert rows[0][column] == f"0.12 ({null_level:g})"
    assert not any(h.startswith("dose 0") for h in head)
