"""`atelier report RUN|SWEEP|BATCH`: one self-contained HTML page of a run, a sweep or a style batch.

This module only resolves the reference, checks the options and dispatches; each report is assembled in its
own module (orchestrator/reports/run_page.py, sweep_page.py, batch_page.py) from the pieces in page.py, read
in one snapshot (``db.engine.one_snapshot``: a run, sweep or batch still running agrees with itself). Every
read, and the inspect job behind the maps, happens before the output folder is made; a failure while writing
removes a folder this command made.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from core.errors import ConfigError
from db.engine import one_snapshot
from orchestrator.commands.common import pass_lab
from orchestrator.jobs.lookups import find_report_target

# Options that shape one kind of report only: given for another kind, they are refused, not ignored.
ONLY_FOR = {"axes": "sweep", "top": "sweep", "per_outcome": "batch", "pages": "batch"}


@click.command("report")
@click.argument("ref")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the page and its pictures [default: report-run-RUN, report-sweep-ID8, report-batch-ID8].")  # fmt: skip
@click.option("--per-outcome", type=click.IntRange(0, 500), default=12, show_default=True,
              help="Batch: stylized works per outcome (content / style / other) on each gallery page.")  # fmt: skip
@click.option("--pages", type=click.IntRange(0, 100), default=5, show_default=True,
              help="Batch: further gallery pages per outcome (gallery-OUTCOME-K.html), no work on two pages.")  # fmt: skip
@click.option("--top", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Sweep: the best cells whose curves are drawn and whose run reports are written under runs/.")  # fmt: skip
@click.option("--axes", default=None, metavar="A,B",
              help="Sweep: the heatmap's two parameters [default: the two varying ones with the most values].")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap, gallery and t-SNE seed.")
@click.option("--no-map", is_flag=True, help="Skip the inspect job: no t-SNE, feature-space map or activation maps.")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser once written.")
@pass_lab
@click.pass_context
def report_cmd(ctx, lab, ref, out, per_outcome, pages, top, axes, seed, no_map, open_page) -> None:
    """Write a report as one index.html with its pictures beside it (opens from file://). REF: a run id, or a
    sweep or style batch id or prefix. Run: configuration, curves, confusion, per-artist scores, confident
    mistakes, t-SNE, activation maps. Sweep: leaderboard, heatmap, best cells' curves and run reports. Batch:
    attribution by dose, plots, the feature-space map, the stylized works by outcome over several pages."""
    with lab.sessions() as s:
        kind, ident = find_report_target(s, ref)
    for name, only in ONLY_FOR.items():
        if kind != only and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            raise ConfigError(f"--{name.replace('_', '-')} applies to a {only} report; {ref!r} is a {kind}")
    if kind == "run":
        data, default = collect_run(lab, ident, seed, no_map), Path(f"report-run-{ident}")
    elif kind == "sweep":
        data, default = collect_sweep(lab, ident, axes, top, seed, no_map), Path(f"report-sweep-{ident[:8]}")
    else:
        data, default = collect_batch(lab, ident, seed, no_map), Path(f"report-batch-{ident[:8]}")
    out = out or default
    index = write_report(kind, data, lab.settings.artifacts, out, per_outcome, pages, seed)
    click.echo(f"wrote {index}")
    if open_page:
        click.launch(index.resolve().as_uri())


def collect_run(lab, run_id: int, seed: int, no_map: bool):
    from orchestrator.reports import page, run_page  # matplotlib and PIL: only when a report is written

    with lab.sessions() as s:
        one_snapshot(s)
        data = run_page.collect(s, run_id)
    if not no_map and data.inspectable():
        data.inspection = page.run_inspection(lab, run_id, None, seed)
    return data


def collect_sweep(lab, sweep_id: str, axes: str | None, top: int, seed: int, no_map: bool):
    from orchestrator.reports import page, sweep_page

    with lab.sessions() as s:
        one_snapshot(s)
        data = sweep_page.collect(s, sweep_id, sweep_page.parse_axes(axes), top)
    for run in data.runs:
        if not no_map and run.inspectable():
            run.inspection = page.run_inspection(lab, run.run["id"], None, seed)
    return data


def collect_batch(lab, batch_id: str, seed: int, no_map: bool):
    from orchestrator.reports import batch_page, page

    with lab.sessions() as s:
        one_snapshot(s)
        data = batch_page.collect(s, batch_id, seed)
    if not no_map and not data.unfinished:  # a running batch is reported; its map waits until it has ended
        data.inspection = page.run_inspection(lab, data.run_id, batch_id, seed)
    return data


def write_report(kind: str, data, artifacts: Path, out: Path, per_outcome: int, pages: int, seed: int) -> Path:
    """Write the page; if writing fails, remove the folder when this command made it (a reused one stays)."""
    from orchestrator.reports import batch_page, run_page, sweep_page

    made = not out.exists()
    try:
        if kind == "run":
            return run_page.write(data, artifacts, out)
        if kind == "sweep":
            return sweep_page.write(data, artifacts, out)
        return batch_page.write(data, artifacts, out, per_outcome, pages, seed)
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise


COMMANDS = [report_cmd]
