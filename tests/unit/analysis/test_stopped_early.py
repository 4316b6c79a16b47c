"""The attribution table counts, per stratum, the stylizations whose optimiser stopped before their steps ran out."""

import numpy as np

import analysis
from tests.unit.analysis import simulate


def test_stopped_early_counts_rows_short_of_their_steps_and_never_rows_without_a_record():
    records = simulate.batch(3).assign(steps=300, steps_done=300, stop_reason="steps done")
    at = records.index[records["level"] == 1.0]
    records.loc[at[:5], ["steps_done", "stop_reason"]] = [120, "line search gave up"]
    records.loc[at[5:7], ["steps_done", "stop_reason"]] = [300, "line search gave up"]  # gave up at its last step
    records.loc[records["level"] == 3.0, ["steps_done", "stop_reason"]] = [np.nan, None]  # older rows: no record
    table = analysis.attribution_table(records)
    doses = table[table["treatment"] == "dose"].set_index("level")
    assert doses.loc[1.0, "stopped_early"] == 5
    assert doses.loc[3.0, "stopped_early"] == 0 and doses.loc[0.3, "stopped_early"] == 0
    assert (table[table["treatment"] == "control"]["stopped_early"] == 0).all()  # the control was never optimised


def test_a_frame_without_the_record_counts_none():
    table = analysis.attribution_table(simulate.batch(0))
    assert (table["stopped_early"] == 0).all()
