"""`atelier results attribution`, `dose-response` and `export`: whom the classifier names when artist A's style is
painted onto B's work, the dose at which A takes over, and the raw records. The numbers are the analysis package's."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import analysis
from core.errors import ConfigError
from orchestrator.commands.common import console, pass_lab, print_json, table

CONDITION = click.option(
    "--condition",
    type=click.Choice(tuple(analysis.CONDITIONS)),
    default="both",
    show_default=True,
    help="Which unstylized images (matched controls) the classifier must recognise for a pair to count.",
)
FORMAT = click.option(
    "--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True
)
PLOT = click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None)
PARTS = ("rates", "contrasts", "baselines", "cells")


@click.command("attribution")
@click.argument("batch_ref")
@click.option(
    "--by",
    type=click.Choice(tuple(analysis.GROUPS)),
    default="dose",
    show_default=True,
    help="Rows per dose, or per dose and artist pair / style artist / content artist.",
)
@CONDITION
@click.option(
    "--part", type=click.Choice(PARTS), default="rates", show_default=True, help="Which table --format csv writes."
)
@PLOT
@FORMAT
@pass_lab
def attribution_cmd(lab, batch_ref, by, condition, part, plot_dir, fmt) -> None:
    """Content / style / other per dose with two-way clustered 95 % intervals, contrasts on the same pairs, baselines."""
    from orchestrator import attribution as view  # pandas and statsmodels: only when a command computes

    with lab.sessions() as s:
        study = view.analyse(view.read_study(s, batch_ref, condition), by)
        controls = view.control_images(s, study) if plot_dir else {}
    frames = {"rates": study.table, "contrasts": study.contrasts, "baselines": study.baselines, "cells": study.cells}
    if fmt == "json":
        print_json(
            {
                "batch": study.info["batch_id"],
                "treatment": study.info["treatment"],
                "method": analysis.METHOD,
                **{k: view.plain(v) for k, v in frames.items()},
            }
        )
    elif fmt == "csv":
        frames[part].to_csv(sys.stdout, index=False)
    else:
        print_study(study)
    if plot_dir:
        from orchestrator import plots  # matplotlib costs half a second of start-up: only when plotting

        plot_dir.mkdir(parents=True, exist_ok=True)
        for path in plots.attribution_plots(study, lab.settings.artifacts, controls, plot_dir):
            click.echo(f"wrote {path}")


def print_study(study) -> None:
    """The intro lines, the rates, contrasts and baselines tables, the method and the rows' query."""
    from orchestrator import attribution as view

    for line in study.intro:
        console.print(line, highlight=False, style="yellow" if line.startswith("warning") else None)
    for title, (head, rows) in (
        (f"whom the classifier names, by {study.by} ({analysis.METHOD_SHORT})", view.rate_rows(study)),
        (
            f"contrasts on the pairs complete at every {study.level_name} ({analysis.METHOD_SHORT})",
            view.contrast_rows(study),
        ),
        ("baselines beside the rates", view.baseline_rows(study)),
    ):
        console.print(table(title, head, rows))
    console.print(analysis.METHOD, highlight=False)
    console.print(view.MARK_NOTE, highlight=False)
    console.print(
        f'rows: atelier query "{analysis.ROWS_SQL.replace(":batch", repr(study.info["batch_id"]))}"', highlight=False
    )


@click.command("dose-response")
@click.argument("batch_ref")
@click.option("--by", type=click.Choice(tuple(analysis.D50_GROUPS)), default="style-artist", show_default=True)
@CONDITION
@PLOT
@FORMAT
@pass_lab
def dose_response_cmd(lab, batch_ref, by, condition, plot_dir, fmt) -> None:
    """d50 per group: the dose at which the style artist overtakes the content artist, on the named answer and on
    the stored probabilities, fitted in log dose with a two-way clustered interval."""
    from orchestrator import attribution as view

    with lab.sessions() as s:
        study = view.read_study(s, batch_ref, condition)
    fits = analysis.dose_response(study.records, by, condition)
    if fmt == "json":
        print_json({"batch": study.info["batch_id"], "method": analysis.FIT_METHOD, "fits": view.plain(fits)})
    elif fmt == "csv":
        fits.to_csv(sys.stdout, index=False)
    else:
        for line in study.intro:
            console.print(line, highlight=False, style="yellow" if line.startswith("warning") else None)
        console.print(table(f"d50 by {by}", *view.d50_rows(fits, study.level_name)))
        console.print(analysis.FIT_METHOD, highlight=False)
        console.print(view.MARK_NOTE, highlight=False)
    if plot_dir:
        from orchestrator import plots

        plot_dir.mkdir(parents=True, exist_ok=True)
        curves = analysis.dose_curves(study.records, by, condition)
        tag = study.info["batch_id"][:8]
        path = plots.d50_curves(curves, fits, by, study.level_name, plot_dir / f"dose-response-{tag}-{by}.png", tag)
        if path:
            click.echo(f"wrote {path}")


@click.command("export")
@click.argument("batch_ref")
@click.option("--format", "fmt", type=click.Choice(("csv", "parquet")), default="csv", show_default=True)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The file to write (default for csv: standard output; parquet needs it).",
)
@pass_lab
def export_cmd(lab, batch_ref, fmt, out) -> None:
    """Every stylization and matched control of a batch with its full record (one table; `record` says which)."""
    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet writes a file: give --out FILE")
    with lab.sessions() as s:
        frame = analysis.export_frame(s, batch_ref)
    if fmt == "csv":
        frame.to_csv(out if out else sys.stdout, index=False)
    else:
        try:
            frame.to_parquet(out, index=False)
        except ImportError as exc:
            raise ConfigError(f"parquet needs pyarrow ({exc}); pip install pyarrow, or use --format csv") from None
    if out:
        click.echo(f"wrote {out}: {len(frame)} records", err=True)


COMMANDS = [attribution_cmd, dose_response_cmd, export_cmd]
