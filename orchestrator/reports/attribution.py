"""A style batch's study as the CLI and the report show it: read through the analysis package, rendered as rows.

The numbers are the analysis package's (``analysis``: pure, pandas); this module only reads a batch with them
(``read_study``) and turns their DataFrames into display cells, so `atelier results attribution`,
`atelier results dose-response` and the batch report print the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

import analysis
from analysis.clustered import FEW
from analysis.records import OUTCOMES
from db.engine import one_snapshot
from orchestrator.reports.batches import batch_totals, describe_batch

KEY_COLUMNS = {"style_artist": "style artist", "content_artist": "content artist"}
MARK_NOTE = (
    f"* the interval rests on fewer than {analysis.MIN_CLUSTERS} distinct content or style images: the jackknife's t "
    "has few degrees of freedom, so it is wide; coverage checked by simulation down to 2 test images per artist"
)
FAMILY_NOTE = (
    "Families: each rate's and each difference's interval is 95 % on its own; the contrasts of one group (every "
    "level × outcome) are one family, and 'Holm p' adjusts each difference's p-value over it"
)
D50_FAMILY_NOTE = (
    "Families: the d50s of this table (one per group and outcome) are one family per outcome: 'slope p (Holm)' "
    "adjusts the test of no dose effect over it, and 'd50, all at once' is a simultaneous (Bonferroni) interval "
    "that covers every d50 of the table together with 95 %"
)


@dataclass
class Study:
    info: dict
    records: pd.DataFrame
    controls: pd.DataFrame
    intro: list[str]
    condition: str
    by: str = "dose"
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    contrasts: pd.DataFrame = field(default_factory=pd.DataFrame)
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def level_name(self) -> str:
        return analysis.LEVEL_NAMES[self.info["treatment"]]

    def kept_rows(self) -> list[dict]:
        return analysis.kept(self.records, self.condition).to_dict("records")


def read_study(session, ref: str, condition: str = "both") -> Study:
    """The batch's records, controls and the lines that say what produced them, read in one snapshot."""
    from db.models import Run

    one_snapshot(session)
    info = analysis.batch_info(session, ref)
    records = analysis.load_batch(session, info["batch_id"])
    controls = analysis.load_controls(session, info["batch_id"])
    from db.models import StyleBatch

    batch, run = session.get(StyleBatch, info["batch_id"]), session.get(Run, info["run_id"])
    totals = batch_totals(session, batch.id)
    kept = len(analysis.kept(records, condition))
    intro = [
        f"batch {batch.id} on {info['dataset']}: {totals['asked']} stylizations asked, {totals['cross']} "
        f"cross-artist done, {totals['same']} same-artist (their own arm, never pooled)",
        *describe_batch(batch, run, len(info["classes"])),
        f"kept {kept} of {totals['cross']} cross-artist stylizations: {analysis.CONDITION_TEXT[condition]}",
    ]
    return Study(info, records, controls, intro, condition)


def analyse(study: Study, by: str) -> Study:
    """The attribution table, the contrasts, the baselines and the pairs kept per cell, for ``by``."""
    study.by = by
    study.table = analysis.attribution_table(study.records, by, study.condition)
    study.contrasts = analysis.contrasts(study.records, by, study.condition)
    study.baselines = analysis.baselines(study.records, study.controls, study.info["classes"], by, study.condition)
    study.cells = analysis.kept_per_cell(study.records, study.condition)
    return study


def control_note(study: Study) -> str:
    """Why the contrasts have no control arm under a conditioning that selects on it ('' when they have one)."""
    if study.condition in analysis.SELECTS_CONTROL:
        return analysis.MECHANICAL_CONTROL.format(condition=study.condition)
    return ""


def p_text(p: Any) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def dose_text(value: Any, extrapolated: str, levels: tuple[float, float]) -> str:
    """A d50 outside the doses tested is shown as a bound ('< 0.1', '> 1000'), never as a bare number like 1e-12."""
    if extrapolated == "below":
        return f"< {levels[0]:g} (extrapolated: {value:.3g})"
    if extrapolated == "above":
        return f"> {levels[1]:g} (extrapolated: {value:.3g})"
    return ""


def number(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def estimate(value: Any, low: Any, high: Any, note: str = "", digits: int = 2, spec: str = "f") -> str:
    """'0.42 (0.33–0.51)', marked '*' when the stratum has few images, '(no interval)' when none stands.
    spec "g": significant digits, for doses that span orders of magnitude."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    fmt = f".{digits}{spec}"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return f"{value:{fmt}} (no interval)"
    mark = "*" if (note or "").startswith(FEW) else ""
    return f"{value:{fmt}} ({low:{fmt}}–{high:{fmt}}){mark}"


def level_text(row: dict, level_name: str) -> str:
    if row["treatment"] == "control":
        return "control (unstylized)"
    return f"{level_name} {row['level']:g}" + (" (null: a reconstruction)" if row["level"] == 0 else "")


def rate_rows(study: Study) -> tuple[list[str], list[list[str]]]:
    keys = analysis.GROUPS[study.by]
    head = ["arm", *(KEY_COLUMNS[k] for k in keys), "n", "pairs", "content imgs", "style imgs"]
    head += [*OUTCOMES, "changed in last ½", "near-ties", "changed, decisive", "stopped early"]
    head += ["loss ratio achieved: median (quartiles)", "balance (the dose's target)"]
    rows = []
    for r in study.table.to_dict("records"):
        cells = [level_text(r, study.level_name), *(r[k] for k in keys)]
        cells += [str(r["n"]), str(r["pairs"]), str(r["content_images"]), str(r["style_images"])]
        cells += [estimate(r[f"{o}_rate"], r[f"{o}_low"], r[f"{o}_high"], r[f"{o}_note"]) for o in OUTCOMES]
        # changed_decisive is a share of the decisive answers; "k of n" shows the count it stands for.
        decisive = f"{round(r['changed_decisive'] * r['decisive'])} of {int(r['decisive'])}" if r["decisive"] else "–"
        # Stylizations whose optimiser stopped before their steps ran out; each row's stop_reason says why.
        early = str(int(r.get("stopped_early", 0))) if r["treatment"] != "control" else "–"
        cells += [number(r["changed_last_half"]), number(r["near_ties"]), decisive, early]
        spread = f"{r['median_loss_ratio']:.3g} ({r['loss_ratio_q25']:.3g}–{r['loss_ratio_q75']:.3g})"
        cells += [spread if not math.isnan(r["median_loss_ratio"]) else "–", number(r["target_balance"], 3)]
        rows.append(cells)
    return head, rows


def contrast_rows(study: Study) -> tuple[list[str], list[list[str]]]:
    keys = analysis.GROUPS[study.by]
    head = [*(KEY_COLUMNS[k] for k in keys), study.level_name, "against", *(f"Δ {o}" for o in OUTCOMES)]
    head += ["Holm p: " + " / ".join(OUTCOMES), "pairs"]
    rows = []
    c = study.contrasts
    if c.empty:
        return head, rows
    for _key, part in c.groupby([*keys, "against", "level"], sort=False):
        by_outcome = {r["outcome"]: r for r in part.to_dict("records")}
        first = next(iter(by_outcome.values()))
        against = "control" if first["against"] == "control" else f"{study.level_name} {first['against_level']:g}"
        cells = [*(first[k] for k in keys), f"{first['level']:g}", against]
        cells += [
            estimate(
                by_outcome[o]["difference"], by_outcome[o]["low"], by_outcome[o]["high"], by_outcome[o]["interval_note"]
            )
            for o in OUTCOMES
        ]
        holm = " / ".join(p_text(by_outcome[o]["p_holm"]) for o in OUTCOMES)
        rows.append([*cells, holm, str(first["pairs"])])
    return head, rows


def baseline_rows(study: Study) -> tuple[list[str], list[list[str]]]:
    keys = analysis.GROUPS[study.by]
    head = [study.level_name, *(KEY_COLUMNS[k] for k in keys), "control: content / style"]
    # The null arm is dose 0 when the batch has one; otherwise its lowest level, named in the cell, never "0".
    head += [f"lowest {study.level_name}: style", "classifier confuses content artist's works as style artist's"]
    head += ["uniform chance 1/K", "style, equal weight per cell", "style, --condition none", "pairs kept"]
    head += ["same-artist: artist still named"]
    rows = []
    for r in study.baselines.to_dict("records"):
        cells = [f"{r['level']:g}", *(r[k] for k in keys)]
        cells += [f"{number(r['control_content_rate'])} / {number(r['control_style_rate'])}"]
        cells += [f"{number(r['null_style_rate'])} ({r['null_level']:g})", number(r["confused_content_as_style"])]
        cells += [number(r["chance_uniform"])]
        cells += [estimate(r["equal_weight_style_rate"], r["equal_weight_style_low"], r["equal_weight_style_high"])]
        cells += [estimate(r["unconditioned_style_rate"], r["unconditioned_style_low"], r["unconditioned_style_high"])]
        cells += [f"{r['pairs_kept']} of {r['pairs_all']} ({number(r['kept_fraction'])})"]
        cells += [estimate(r["same_artist_named"], r["same_artist_low"], r["same_artist_high"], r["same_artist_note"])]
        rows.append(cells)
    return head, rows


def d50_rows(fits: pd.DataFrame, level_name: str, levels: tuple[float, float]) -> tuple[list[str], list[list[str]]]:
    """One row per group and outcome; ``levels``: the lowest and highest dose > 0 tested (for extrapolated d50s)."""
    keys = [k for k in ("style_artist", "content_artist") if k in fits.columns]
    head = [*(KEY_COLUMNS[k] for k in keys), "outcome", "n", "content imgs", "style imgs"]
    head += [f"slope per log {level_name}", "slope p (Holm)", f"d50 ({level_name})", "d50, all at once", "note"]
    rows = []
    for r in fits.to_dict("records"):
        cells = [*(r[k] for k in keys), r["outcome"], str(r["n"]), str(r["content_images"]), str(r["style_images"])]
        cells += [estimate(r.get("slope"), r.get("slope_low"), r.get("slope_high"), r["note"])]
        cells += [p_text(r.get("slope_p_holm"))]
        shown = dose_text(r["d50"], r.get("extrapolated") or "", levels)
        cells += [shown or estimate(r["d50"], r.get("d50_low"), r.get("d50_high"), r["note"], digits=3, spec="g")]
        together = r.get("d50_low_simultaneous")
        cells += [
            f"{together:.3g}–{r['d50_high_simultaneous']:.3g}"
            if together is not None and together == together
            else "–",
            r["note"] or "",
        ]
        rows.append(cells)
    return head, rows


def tested_levels(records: pd.DataFrame) -> tuple[float, float]:
    """The lowest and highest level > 0 of a batch (where a d50 can be read without extrapolating)."""
    levels = pd.to_numeric(records["level"], errors="coerce")
    levels = levels[levels > 0]
    return (float(levels.min()), float(levels.max())) if len(levels) else (math.nan, math.nan)


def plain(frame: pd.DataFrame) -> list[dict]:
    """DataFrame rows as JSON-ready dicts: NaN as null, tuples as lists."""
    out = []
    for r in frame.to_dict("records"):
        out.append(
            {
                k: None
                if isinstance(v, float) and math.isnan(v)
                else list(v)
                if isinstance(v, tuple)
                else v.item()
                if hasattr(v, "item")
                else v
                for k, v in r.items()
            }
        )
    return out


def control_images(session, study: Study) -> dict[int, str]:
    """Image id -> the PNG of its matched control, as the classifier saw it (for the contact sheet)."""
    from orchestrator.reports.batches import control_paths

    return control_paths(session, study.info["run_id"], study.info["spec"]["style"]["size"])
