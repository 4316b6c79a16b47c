"""Several attributors on one batch as the CLI and the report show them (issue 31): a study read through another
attributor, two attributors compared on the same works, one dose-response curve per attributor.

The numbers are ``analysis.attributors``'; this module reads and renders them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import analysis
from analysis import attributors as answers
from core.errors import ConfigError
from orchestrator.reports.attribution import Study, estimate, p_text, read_study


def read_attributed(session, ref: str, condition: str, attributor: str | None) -> Study:
    """The batch's study as ``read_study`` reads it, with the records and controls of ``attributor`` (None: the
    batch's own classifier), and a line saying whose answers they are."""
    study = read_study(session, ref, condition)
    key = answers.resolve_key(session, study.info["batch_id"], attributor)
    study.info["attributor"] = key
    if attributor in (None, "own") or key == answers.resolve_key(session, study.info["batch_id"], None):
        return study
    study.records = answers.load_attributions(session, study.info["batch_id"], key)
    study.controls = answers.load_attribution_controls(session, study.info["batch_id"], key)
    kept = len(analysis.kept(study.records, condition))
    study.intro.append(
        f"answers by attributor {key} on {len(study.records)} stylizations (its own controls decide what is kept: "
        f"{kept} kept)"
    )
    return study


def compared(session, ref: str, spec: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records of the two attributors ``spec`` ('A,B') names on the batch."""
    names = [n.strip() for n in spec.split(",")]
    if len(names) != 2 or not all(names):
        raise ConfigError(f"--compare {spec!r}: give two attributors, A,B (own: the batch's classifier)")
    info = analysis.batch_info(session, ref)
    keys = [answers.resolve_key(session, info["batch_id"], n) for n in names]
    if keys[0] == keys[1]:
        raise ConfigError(f"--compare {spec!r} names one attributor twice")
    return tuple(answers.load_attributions(session, info["batch_id"], k) for k in keys)  # type: ignore[return-value]


def compare_rows(frame: pd.DataFrame, level_name: str) -> tuple[list[str], list[list[str]]]:
    """Per level: each attributor's style rate and the difference, as table cells."""
    a, b = frame["attributor_a"].iloc[0], frame["attributor_b"].iloc[0]
    head = [level_name, "n", "content imgs", "style imgs", f"style: {a}", f"style: {b}", "A − B", "p"]
    rows = [
        [
            f"{r['level']:g}", str(r["n"]), str(r["content_images"]), str(r["style_images"]),
            estimate(r["style_a"], r["style_a_low"], r["style_a_high"], r["note"]),
            estimate(r["style_b"], r["style_b_low"], r["style_b_high"], r["note"]),
            estimate(r["difference"], r["difference_low"], r["difference_high"], r["note"]), p_text(r["p"]),
        ]
        for r in frame.to_dict("records")
    ]  # fmt: skip
    return head, rows


def ratio_rows(frame: pd.DataFrame, level_name: str) -> tuple[list[str], list[list[str]]]:
    head = ["outcome", f"d50 A ({level_name})", f"d50 B ({level_name})", "d50 A / d50 B", "note"]
    rows = [
        [
            r["outcome"], _g(r["d50_a"]), _g(r["d50_b"]),
            estimate(r["ratio"], r["ratio_low"], r["ratio_high"], r["note"], digits=3, spec="g"), r["note"] or "",
        ]
        for r in frame.to_dict("records")
    ]  # fmt: skip
    return head, rows


def _g(value: float) -> str:
    return f"{value:.3g}" if value == value else "–"


def motif_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    head = ["level", "n", "to content image", "to style image", "share closer to the style image"]
    rows = [
        [
            f"{r['level']:g}", str(r["n"]), f"{r['near_content']:.3f}", f"{r['near_style']:.3f}",
            estimate(r["closer_to_style"], r["closer_to_style_low"], r["closer_to_style_high"], r["note"]),
        ]
        for r in frame.to_dict("records")
    ]  # fmt: skip
    return head, rows


def attributor_curves(records: dict[str, pd.DataFrame], condition: str, level_name: str, path: Path, tag: str):
    """One plot, one fitted dose-response curve per attributor (named outcome and probabilities), each on the works
    it answered, with its band and observed means."""
    from orchestrator.reports import plots

    frames = []
    for key, rec in records.items():
        curves = analysis.dose_curves(rec, "all", condition)
        if not curves.empty:
            frames.append(curves.assign(style_artist=key))  # the plot's group column: one curve per attributor
    if not frames:
        return None
    curves = pd.concat(frames, ignore_index=True)
    fits = pd.DataFrame()
    return plots.d50_curves(curves, fits, "attributor", level_name, path, tag)
