"""The rates table shows the decisive answers that changed as a count of the decisive ones ("1 of 7"), not the
share the analysis keeps ("0.14 of 7" read as a count)."""

import json

import pandas as pd

import analysis
from orchestrator.reports.attribution import Study, rate_rows
from tests.unit.analysis import simulate


def test_changed_decisive_answers_are_counted_of_the_decisive():
    records = simulate.batch(2)
    at = records.index[records["level"] == 1.0]
    clear = {"A0": 0.80, "A1": 0.10, "A2": 0.10}
    records["probs"] = [json.dumps(clear)] * len(records)
    changed = at[:3]
    records.loc[changed, "predicted_half"] = [f"not {p}" for p in records.loc[changed, "predicted"]]
    study = Study({"treatment": "dose"}, records, pd.DataFrame(), [], "none")
    study.table = analysis.attribution_table(records, "dose", "none")
    head, rows = rate_rows(study)
    column, level = head.index("changed, decisive"), list(study.table["level"]).index(1.0)
    assert rows[level][column] == f"3 of {len(at)}"
