"""A sweep's report: the leaderboard with only the parameters that vary, a heatmap of the ranking metric over
two of them, the validation curves of the best cells, and a run report for each of those, linked from its row.

Reading (``collect``) and writing (``write``) are apart: every query, the choice of axes and the inspect jobs
of the best runs happen before the output folder exists, so bad input leaves nothing behind.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from core import weights as names
from core.config import METRIC_NAMES
from core.errors import ConfigError
from orchestrator.jobs.gridspec import split_constant
from orchestrator.reports import page, run_page
from orchestrator.reports.page import Section, escape

SWEEP_SQL = (
    "SELECT s.id, s.arch, s.metric, s.finetune_top, d.name AS dataset FROM sweeps s "
    "JOIN datasets d ON d.id = s.dataset_id WHERE s.id = :sweep"
)
LEADERBOARD_SQL = (
    "SELECT stage, rank, cell_index, cell, status, run_id, val_metric, val_macro_f1, val_top1, val_top2, "
    "test_macro_f1, test_top1 FROM grid_leaderboard WHERE sweep_id = :sweep ORDER BY stage DESC, rank, cell_index"
)
WEIGHTS_SQL = (
    "SELECT DISTINCT r.arch, r.weights, r.weights_sha256 FROM runs r JOIN sweep_cells sc ON sc.run_id = r.id "
    "WHERE sc.sweep_id = :sweep ORDER BY r.arch, r.weights"
)
# The best cells' validation curves; the run ids are the page's top cells, written into the query as numbers.
CURVES_SQL = (
    "SELECT run_id, epoch, top1, top2, macro_f1 FROM epoch_metrics WHERE phase = 'val' AND run_id IN ({runs}) "
    "ORDER BY run_id, epoch"
)


@dataclass
class SweepData:
    sweep: dict
    cells: list[dict]  # leaderboard rows, cell parsed
    weights: list[dict]
    axes: tuple[str, str] | None
    top: list[dict]  # the best cells, best first
    curves: list[dict]
    queries: dict[str, str]
    runs: list[run_page.RunData] = field(default_factory=list)  # the top cells' run reports


def parse_axes(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ConfigError(f"--axes takes two different parameters as A,B, got {text!r}")
    return parts[0], parts[1]


def _key(value) -> str:
    """A parameter value as a hashable, comparable key (a cell may hold a list: dense widths)."""
    return json.dumps(value, sort_keys=True)


def _order(values: list) -> list:
    """Distinct values in a readable order: numbers by size, then anything else by its text."""
    distinct = list({_key(v): v for v in values}.values())
    return sorted(distinct, key=lambda v: (0, v, "") if isinstance(v, int | float) else (1, 0, str(v)))


def choose_axes(cells: list[dict], asked: tuple[str, str] | None) -> tuple[str, str] | None:
    """The heatmap's (columns, rows): the two parameters asked for, which must vary across ``cells``; by default
    the two varying ones with the most distinct values (ties: the first seen). None when fewer than two vary."""
    constant, varying = split_constant(cells)
    if asked:
        for name in asked:
            if name in constant:
                raise ConfigError(
                    f"--axes: {name} is {constant[name]!r} in every cell; varying: {', '.join(varying) or 'none'}"
                )
            if name not in varying:
                known = ", ".join([*varying, *constant]) or "none"
                raise ConfigError(f"--axes: {name!r} is not a parameter of the sweep's cells (they have: {known})")
        return asked
    if len(varying) < 2:
        return None
    counts = {k: len({_key(c[k]) for c in cells if k in c}) for k in varying}
    ranked = sorted(varying, key=lambda k: -counts[k])  # stable: first seen wins a tie
    return ranked[0], ranked[1]


def mean_grid(cells: list[tuple[dict, float | None]], a: str, b: str) -> tuple[list, list, list[list[float]]]:
    """(values of ``a``, values of ``b``, matrix[b][a]): the mean of each (a, b) square's results over the other
    parameters' cells; NaN where no cell there has a result."""
    xs = _order([c[a] for c, _ in cells if a in c])
    ys = _order([c[b] for c, _ in cells if b in c])
    sums: dict[tuple[str, str], list[float]] = {}
    for c, v in cells:
        if v is not None and a in c and b in c:
            sums.setdefault((_key(c[a]), _key(c[b])), []).append(v)
    m = [[math.nan] * len(xs) for _ in ys]
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            found = sums.get((_key(x), _key(y)))
            if found:
                m[i][j] = sum(found) / len(found)
    return xs, ys, m


def best_cells(cells: list[dict], k: int) -> list[dict]:
    """The ``k`` cells with the highest ranking metric, one per run, in leaderboard order on ties."""
    ranked = sorted(
        (c for c in cells if c["val_metric"] is not None),
        key=lambda c: (-c["val_metric"], c["stage"] != "grid", c["cell_index"]),
    )
    chosen, runs = [], set()
    for c in ranked:
        if c["run_id"] not in runs and len(chosen) < k:
            chosen.append(c)
            runs.add(c["run_id"])
    return chosen


def collect(session, sweep_id: str, axes: tuple[str, str] | None, top: int) -> SweepData:
    """The sweep, its leaderboard and the best cells' curves and run reports (without their inspect jobs)."""
    found, q_sweep = page.fetch(session, SWEEP_SQL, sweep=sweep_id)
    cells, q_board = page.fetch(session, LEADERBOARD_SQL, sweep=sweep_id)
    weights, q_weights = page.fetch(session, WEIGHTS_SQL, sweep=sweep_id)
    for c in cells:
        c["cell"] = page.json_value(c["cell"]) or {}
    chosen = choose_axes([c["cell"] for c in cells if c["stage"] == "grid"], axes)
    best = best_cells(cells, top)
    curves, q_curves = [], None
    if best:
        sql = CURVES_SQL.format(runs=", ".join(str(int(c["run_id"])) for c in best))
        curves, q_curves = page.fetch(session, sql)
    return SweepData(
        sweep=found[0],
        cells=cells,
        weights=weights,
        axes=chosen,
        top=best,
        curves=curves,
        queries={"sweep": q_sweep, "leaderboard": q_board, "weights": q_weights, "curves": q_curves},
        runs=[run_page.collect(session, c["run_id"]) for c in best],
    )


def cell_text(cell: dict, varying: list[str]) -> str:
    return " ".join(f"{k}={cell[k]}" for k in varying if k in cell) or "-"


# The leaderboard's metric columns: (grid_leaderboard column, header, the sweep --metric it holds).
METRIC_COLUMNS = (
    ("val_macro_f1", "val macro-F1", "macro_f1"),
    ("val_top1", "val top-1", "top1"),
    ("val_top2", "val top-2", "top2"),
    ("test_macro_f1", "test macro-F1", None),
    ("test_top1", "test top-1", None),
)


def leaderboard_section(data: SweepData) -> Section:
    """One row per cell (both stages), only the varying parameters as columns; the best cells' runs link to
    their reports."""
    constant, varying = split_constant([c["cell"] for c in data.cells])
    metric = METRIC_NAMES.get(data.sweep["metric"], data.sweep["metric"])
    linked = {r.run["id"] for r in data.runs}
    rows = []
    for c in data.cells:
        run = escape(str(c["run_id"]))
        link = f'<a href="runs/{run}/index.html">{run}</a>' if c["run_id"] in linked else run
        params = [c["cell"].get(k) for k in varying]
        rows.append(
            (
                link,
                c["rank"],
                c["stage"],
                c["cell_index"],
                *params,
                c["status"],
                *(c[column] for column, _, _ in METRIC_COLUMNS),
            )
        )
    ranks = [f"{head} (ranks)" if m == data.sweep["metric"] else head for _, head, m in METRIC_COLUMNS]
    headers = ("run", "rank", "stage", "cell", *varying, "status", *ranks)
    every = " ".join(f"{k}={v}" for k, v in constant.items()) or "(no parameter is shared by every cell)"
    html = (
        f"<p>every cell: {escape(every)}</p>"
        + page.html_table("leaderboard", headers, rows, raw=1)
        + f"<p>Ranked within each stage by validation {escape(metric)}; the {len(linked)} best cells' runs link to "
        "their reports.</p>"
    )
    return Section(f"Leaderboard: cells ranked by validation {metric}", html, [data.queries["leaderboard"]])


def heatmap_section(data: SweepData, out: Path) -> Section:
    from orchestrator.reports import plots  # matplotlib: only when a report is written

    metric = METRIC_NAMES.get(data.sweep["metric"], data.sweep["metric"])
    title = f"Validation {metric} over two parameters"
    if data.axes is None:
        return Section(title, page.not_computed("fewer than two parameters vary across the grid's cells"))
    a, b = data.axes
    xs, ys, m = mean_grid([(c["cell"], c["val_metric"]) for c in data.cells if c["stage"] == "grid"], a, b)
    import numpy as np

    picture = plots.value_heatmap(
        np.asarray(m, dtype=float),
        xs,
        ys,
        (a, b, f"mean validation {metric}"),
        out / f"sweep-{data.sweep['id'][:8]}-{b}-{a}.png",
        f"sweep {data.sweep['id'][:8]}: mean val {metric}",
    )
    note = f"<p>Each square: the mean over the grid cells with that {escape(a)} and {escape(b)} (empty: no result).</p>"
    return Section(title, note + page.plot_images([picture]), [data.queries["leaderboard"]])


def curves_section(data: SweepData, out: Path) -> Section:
    from orchestrator.reports import plots

    metric = data.sweep["metric"]
    title = f"Validation {METRIC_NAMES.get(metric, metric)} per epoch of the best cells"
    if not data.top:
        return Section(title, page.not_computed("no cell has a result yet"))
    _, varying = split_constant([c["cell"] for c in data.cells])
    curves = {
        f"run {c['run_id']} ({c['stage']} cell {c['cell_index']}: {cell_text(c['cell'], varying)})": [
            (e["epoch"], e[metric]) for e in data.curves if e["run_id"] == c["run_id"]
        ]
        for c in data.top
    }
    picture = plots.top_curves(
        curves,
        METRIC_NAMES.get(metric, metric),
        out / f"sweep-{data.sweep['id'][:8]}-top.png",
        f"sweep {data.sweep['id'][:8]}: the {len(data.top)} best cells",
    )
    html = page.plot_images([picture]) if picture else page.not_computed("the best cells have no epochs on record")
    return Section(title, html, [data.queries["curves"]])


def intro(data: SweepData) -> list[str]:
    s = data.sweep
    used = ", ".join(sorted({names.describe(w["weights"], w["weights_sha256"]) for w in data.weights})) or "-"
    lines = [
        f"sweep {s['id']}: {s['arch']} on {s['dataset']}, {len(data.cells)} cells, ranked by validation "
        f"{METRIC_NAMES.get(s['metric'], s['metric'])}",
        f"weights: {used}",
    ]
    random_archs = sorted({w["arch"] for w in data.weights if names.warns_random(w["arch"], w["weights"])})
    lines += [names.random_warning(f"runs of sweep {s['id'][:8]}", arch) for arch in random_archs]
    return lines


def write(data: SweepData, artifacts: Path, out: Path) -> Path:
    """``out/index.html`` with its pictures, and the best cells' run reports under ``out/runs/<run id>/``."""
    out.mkdir(parents=True, exist_ok=True)
    for run in data.runs:
        back = '<nav><a href="../../index.html">the sweep</a></nav>'
        run_page.write(run, artifacts, out / "runs" / str(run.run["id"]), back)
    sections = [leaderboard_section(data), heatmap_section(data, out), curves_section(data, out)]
    index = out / "index.html"
    index.write_text(page.page(f"atelier sweep {data.sweep['id'][:8]}", intro(data), sections), encoding="utf-8")
    return index
