"""The attribution study's statistics as a pure library: reads the store, never writes; no click, no torch.

    import analysis
    records = analysis.load_batch("sqlite:////home/me/.atelier/atelier.db", "3f2a")   # a URL, an Engine or a Session
    analysis.attribution_table(records, by="dose")    # rates per dose, intervals by the jackknife over images
    analysis.contrasts(records)                       # rate(d) − rate(dose 0) and rate(d) − control, same pairs
    analysis.dose_response(records, by="style-artist")  # d50 per style artist, named outcome and probabilities

Every function returns a pandas DataFrame; intervals follow ``analysis.clustered.METHOD``. The names load
lazily (PEP 562): the CLI reads ``analysis.names`` at start-up without paying for pandas and statsmodels.
"""

from __future__ import annotations

import importlib

from analysis.names import (
    CONDITION_TEXT,
    CONDITIONS,
    D50_GROUPS,
    GROUPS,
    LEVEL_NAMES,
    MECHANICAL_CONTROL,
    OUTCOMES,
    SELECTS_CONTROL,
)

_WHERE = {
    "baselines": "baseline",
    "confusion": "baseline",
    "kept_per_cell": "baseline",
    "METHOD": "clustered",
    "METHOD_SHORT": "clustered",
    "MIN_CLUSTERS": "clustered",
    "FIT_METHOD": "doseresponse",
    "dose_curves": "doseresponse",
    "dose_response": "doseresponse",
    "NEAR_TIE": "records",
    "ROWS_SQL": "records",
    "batch_info": "records",
    "export_frame": "records",
    "kept": "records",
    "kept_sql": "records",
    "load_batch": "records",
    "load_controls": "records",
    "top2_margin": "records",
    "attribution_table": "tables",
    "attributors_of": "attributors",
    "compare_rates": "attributors",
    "d50_ratio": "attributors",
    "load_attribution_controls": "attributors",
    "load_attributions": "attributors",
    "contrasts": "tables",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"analysis.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


__all__ = [
    "CONDITIONS",
    "CONDITION_TEXT",
    "D50_GROUPS",
    "GROUPS",
    "LEVEL_NAMES",
    "MECHANICAL_CONTROL",
    "OUTCOMES",
    "SELECTS_CONTROL",
    *_WHERE,
]
