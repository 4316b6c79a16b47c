"""`atelier results`: what the runs achieved, and what a style batch's study found.

`runs`, `run` and `grid` read training metrics; `attribution`, `dose-response` and `export` read a style batch:
whom the classifier names when artist A's style is painted onto B's work, the dose at which A takes over, and the
raw records. The numbers of a study are the analysis package's (``orchestrator.reports.attribution`` shows them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy import select, text

import analysis
from core import weights as names
from core.config import METRIC_NAMES
from core.errors import ConfigError
from db.models import Dataset, EpochMetric, Job, Run, SweepCell
from orchestrator.commands.common import console, pass_lab, print_json, table
from orchestrator.jobs.gridspec import split_constant
from orchestrator.jobs.lookups import find_sweep

RUN_COLUMNS = (
    "run",
    "dataset",
    "arch",
    "mode",
    "weights",
    "weights sha256",
    "status",
    "best epoch",
    "val top1",
    "val top2",
    "val F1",
    "test top1",
    "test F1",
)


@click.group("results")
def results_group() -> None:
    """Metrics of runs (and later of grids and style batches)."""


def run_rows(session, dataset: str | None = None) -> list[dict]:
    """A row per run, keyed by RUN_COLUMNS."""
    q = (
        select(Run, Dataset.name.label("dataset"), Job.status.label("status"))
        .join(Dataset, Run.dataset_id == Dataset.id)
        .join(Job, Run.job_id == Job.id)
        .order_by(Run.id)
    )
    if dataset:
        q = q.where(Dataset.name == dataset)
    rows = []
    for row in session.execute(q).mappings():
        r = row["Run"]
        rows.append(
            dict(
                zip(
                    RUN_COLUMNS,
                    (
                        r.id,
                        row["dataset"],
                        r.arch,
                        r.config.get("mode"),
                        *run_weights(r),
                        row["status"],
                        r.best_epoch,
                        r.best_val_top1,
                        r.best_val_top2,
                        r.best_val_macro_f1,
                        r.test_top1,
                        r.test_macro_f1,
                    ),
                )
            )
        )
    return rows


def run_weights(run: Run) -> tuple[str, str | None]:
    """(name, sha256) of what a run's backbone started from; runs older than the weights registry: their config's."""
    return names.started_from(run.weights, run.config), run.weights_sha256


def warn_random(runs: list[tuple[int, str, str | None]], err: bool = False) -> None:
    """One warning line for the (run id, arch, weights name) that started from random init where ImageNet exists."""
    ids = [str(i) for i, arch, name in runs if names.warns_random(arch, name)]
    if ids:
        shown = ", ".join(ids[:8]) + (f", ... ({len(ids)} in all)" if len(ids) > 8 else "")
        click.echo(names.random_warning(f"run {shown}" if len(ids) == 1 else f"runs {shown}"), err=err)


@results_group.command("runs")
@click.option("--dataset", default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def runs_cmd(lab, dataset, as_json) -> None:
    """A row per run with its best validation top-1 and macro-F1."""
    with lab.sessions() as s:
        rows = run_rows(s, dataset)
    if as_json:
        print_json(rows)
    else:
        console.print(
            table(
                None,
                RUN_COLUMNS,
                [tuple(r[c][:12] if c == "weights sha256" and r[c] else r[c] for c in RUN_COLUMNS) for r in rows],
            )
        )
    warn_random([(r["run"], r["arch"], r["weights"]) for r in rows], err=as_json)


@results_group.command("run")
@click.argument("run_id", type=int)
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write training curves and the confusion matrix as PNG here.",
)
@pass_lab
def run_cmd(lab, run_id, plot_dir) -> None:
    """One run: its configuration, the per-epoch curve and the test confusion matrix."""
    with lab.sessions() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise ConfigError(f"no run {run_id}")
        ds = s.get(Dataset, run.dataset_id)
        job = s.get(Job, run.job_id)
        epochs = epoch_rows(s, run_id)
    console.print(f"[bold]run {run.id}[/] on {ds.name}: {run.arch}, job {job.id} {job.status}")
    name, sha = run_weights(run)
    console.print(f"weights: {names.describe(name, sha)}", highlight=False)
    warn_random([(run.id, run.arch, name)])
    console.print(table("configuration", ("option", "value"), sorted(run.config.items())))
    console.print(
        table(
            "epochs",
            ("epoch", "phase", "stage", "loss", "top1", "top2", "macro F1", "lr"),
            [tuple(e.values()) for e in epochs],
        )
    )
    console.print(
        table(
            "test (best checkpoint)", ("top1", "top2", "macro F1"), [(run.test_top1, run.test_top2, run.test_macro_f1)]
        )
    )
    if run.test_confusion:
        console.print(
            table(
                "confusion matrix (rows: true, columns: predicted)",
                ("", *ds.classes),
                [(c, *row) for c, row in zip(ds.classes, run.test_confusion)],
            )
        )
        console.print(table("per-class F1", ("class", "F1"), zip(ds.classes, run.test_per_class_f1)))
    if plot_dir:
        plot_run(run, ds, epochs, plot_dir)


def epoch_rows(session, run_id: int) -> list[dict]:
    """A run's per-epoch metrics, in epoch and phase order."""
    return [
        dict(
            epoch=e.epoch,
            phase=e.phase,
            stage=e.stage,
            loss=e.loss,
            top1=e.top1,
            top2=e.top2,
            macro_f1=e.macro_f1,
            lr=e.lr,
        )
        for e in session.scalars(
            select(EpochMetric).where(EpochMetric.run_id == run_id).order_by(EpochMetric.epoch, EpochMetric.phase)
        )
    ]


def plot_run(run: Run, ds: Dataset, epochs: list[dict], plot_dir: Path) -> None:
    """Training curves and the test confusion matrix as PNG."""
    from orchestrator.reports import plots  # matplotlib costs half a second of start-up: only when plotting

    run_id = run.id
    plot_dir.mkdir(parents=True, exist_ok=True)
    written = [
        plots.training_curves(epochs, plot_dir / f"run-{run_id}-curves.png", f"run {run_id} {run.arch} on {ds.name}")
    ]
    if run.test_confusion:
        written.append(
            plots.confusion_matrix(
                run.test_confusion,
                ds.classes,
                plot_dir / f"run-{run_id}-confusion.png",
                f"run {run_id}: test confusion",
            )
        )
    for p in written:
        click.echo(f"wrote {p}")


# The columns of `results grid` and the grid_leaderboard columns they show.
GRID_COLUMNS = {
    "rank": "rank",
    "stage": "stage",
    "cell": "cell",
    "status": "status",
    "run": "run_id",
    "val F1": "val_macro_f1",
    "val top1": "val_top1",
    "val top2": "val_top2",
    "test F1": "test_macro_f1",
    "test top1": "test_top1",
}
# A sweep's --metric: the GRID_COLUMNS column that holds it.
METRIC_COLUMNS = {"macro_f1": "val F1", "top1": "val top1", "top2": "val top2"}


@results_group.command("grid")
@click.argument("sweep_ref")
@click.option("--top", type=click.IntRange(1), default=None, help="Only the N best cells.")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write a heatmap of the sweep's validation --metric over two axes as PNG here.",
)
@click.option("--x", "x_axis", default="dense1", show_default=True, help="Heatmap column axis.")
@click.option("--y", "y_axis", default="dense2", show_default=True, help="Heatmap row axis.")
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def grid_cmd(lab, sweep_ref, top, plot_dir, x_axis, y_axis, as_json) -> None:
    """Cells of a sweep ranked by its validation --metric (the `grid_leaderboard` view)."""
    with lab.sessions() as s:
        sweep = find_sweep(s, sweep_ref)
        if sweep is None:
            raise ConfigError(f"no sweep {sweep_ref!r}")
        found = (
            s.execute(
                text(
                    f"SELECT {', '.join(GRID_COLUMNS.values())} FROM grid_leaderboard WHERE sweep_id = :sid "
                    "ORDER BY stage DESC, rank, cell_index"
                ),
                {"sid": sweep.id},
            )
            .mappings()
            .all()
        )
        weights = {
            r.id: (r.arch, *run_weights(r))
            for r in s.scalars(
                select(Run).join(SweepCell, SweepCell.run_id == Run.id).where(SweepCell.sweep_id == sweep.id)
            )
        }
    # SQLite hands the JSON cell back as text, PostgreSQL as a dict.
    rows = [
        {
            c: json.loads(row[v]) if c == "cell" and not isinstance(row[v], dict) else row[v]
            for c, v in GRID_COLUMNS.items()
        }
        for row in found
    ]
    if top:
        rows = [r for r in rows if r["rank"] <= top]
    if as_json:
        print_json(
            [
                {
                    **r,
                    "weights": weights.get(r["run"], (None,) * 3)[1],
                    "weights sha256": weights.get(r["run"], (None,) * 3)[2],
                }
                for r in rows
            ]
        )
    else:
        print_grid(sweep, rows, weights)
    warn_random([(run_id, arch, name) for run_id, (arch, name, _) in sorted(weights.items())], err=as_json)
    if plot_dir:
        plot_grid(sweep, rows, plot_dir, x_axis, y_axis)


def print_grid(sweep, rows: list[dict], weights: dict) -> None:
    """The leaderboard with only what varies between cells, and the weights the cells used."""
    constant, varying = split_constant([r["cell"] for r in rows])
    if constant:
        click.echo(f"every cell: {' '.join(f'{k}={v}' for k, v in constant.items())}")
    console.print(
        table(
            f"sweep {sweep.id}: ranked by validation {METRIC_NAMES[sweep.metric]}",
            tuple(GRID_COLUMNS),
            [
                tuple(
                    " ".join(f"{k}={r[c][k]}" for k in varying if k in r[c]) or "-" if c == "cell" else r[c]
                    for c in GRID_COLUMNS
                )
                for r in rows
            ],
        )
    )
    used = sorted({names.describe(name, sha) for _, name, sha in weights.values()})
    click.echo(f"weights: {', '.join(used) or '-'}")


def plot_grid(sweep, rows: list[dict], plot_dir: Path, x_axis: str, y_axis: str) -> None:
    """A heatmap of the sweep's validation metric over two axes (each square: the best cell)."""
    from orchestrator.reports import plots  # matplotlib costs half a second of start-up: only when plotting

    plot_dir.mkdir(parents=True, exist_ok=True)
    value = METRIC_COLUMNS[sweep.metric]
    path = plots.grid_heatmap(
        [(r["cell"], r[value]) for r in rows if r["stage"] == "grid"],
        x_axis,
        y_axis,
        plot_dir / f"sweep-{sweep.id[:8]}-{y_axis}-{x_axis}.png",
        f"sweep {sweep.id[:8]}: best val {METRIC_NAMES[sweep.metric]} over the other parameters",
    )
    click.echo(f"wrote {path}")


# The attribution study has its own module; its commands are results subcommands like the others.


# A style batch's study: attribution, dose-response, export.

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
ATTRIBUTOR = click.option(
    "--attributor",
    default=None,
    help="Whose answers: an attributor's key or its prefix (`results attributors`) [default: the batch's classifier].",
)
COMPARE = click.option(
    "--compare",
    default=None,
    metavar="A,B",
    help="Two attributors on the same works ('own': the batch's classifier): their difference, paired.",
)


@results_group.command("attribution")
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
@ATTRIBUTOR
@COMPARE
@PLOT
@FORMAT
@pass_lab
def attribution_cmd(lab, batch_ref, by, condition, part, attributor, compare, plot_dir, fmt) -> None:
    """Content / style / other per dose with 95 % intervals over images, contrasts on the same pairs, baselines."""
    from orchestrator.reports import attribution as view  # pandas and statsmodels: only when a command computes
    from orchestrator.reports.attributors import read_attributed

    if compare:
        compare_attribution(lab, batch_ref, condition, compare, fmt)
        return
    with lab.sessions() as s:
        study = view.analyse(read_attributed(s, batch_ref, condition, attributor), by)
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
        print_motif(study)
    if plot_dir:
        from orchestrator.reports import plots  # matplotlib costs half a second of start-up: only when plotting

        plot_dir.mkdir(parents=True, exist_ok=True)
        for path in plots.attribution_plots(study, lab.settings.artifacts, controls, plot_dir):
            click.echo(f"wrote {path}")


def print_motif(study) -> None:
    """The content space's motif-copy measure per level, when the study reads it (`--attributor content-space`)."""
    from analysis.attributors import motif_copy
    from orchestrator.reports.attributors import motif_rows

    frame = motif_copy(study.records)
    if not frame.empty:
        console.print(table("how close the works came to their sources (relu4_2, cosine)", *motif_rows(frame)))


def print_study(study) -> None:
    """The intro lines, the rates, contrasts and baselines tables, the method and the rows' query."""
    from orchestrator.reports import attribution as view

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
    for line in (analysis.METHOD, view.MARK_NOTE, view.FAMILY_NOTE, view.control_note(study)):
        if line:
            console.print(line, highlight=False)
    console.print(
        f'rows: atelier query "{analysis.ROWS_SQL.replace(":batch", repr(study.info["batch_id"]))}"', highlight=False
    )


def compare_attribution(lab, batch_ref: str, condition: str, compare: str, fmt: str) -> None:
    """`results attribution --compare A,B`: per level, each attributor's style rate and A − B on the same works."""
    from analysis.attributors import compare_rates
    from orchestrator.reports import attributors as view

    with lab.sessions() as s:
        a, b = view.compared(s, batch_ref, compare)
        level_name = analysis.LEVEL_NAMES[analysis.batch_info(s, batch_ref)["treatment"]]
    frame = compare_rates(a, b, condition)
    if fmt == "json":
        print_json({"batch": a["batch_id"].iloc[0], "method": analysis.METHOD, "compare": view_plain(frame)})
    elif fmt == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        title = f"style rates of two attributors on the same works ({analysis.METHOD_SHORT}; paired)"
        console.print(table(title, *view.compare_rows(frame, level_name)))
        console.print(f"{analysis.CONDITION_TEXT[condition]}, under each attributor's own controls", highlight=False)
        console.print(analysis.METHOD, highlight=False)


def view_plain(frame) -> list[dict]:
    from orchestrator.reports.attribution import plain

    return plain(frame)


def compare_d50(lab, batch_ref: str, condition: str, compare: str, plot_dir: Path | None, fmt: str) -> None:
    """`results dose-response --compare A,B`: each attributor's d50 on the same works and their ratio."""
    from analysis.attributors import d50_ratio, paired
    from orchestrator.reports import attribution as study_view
    from orchestrator.reports import attributors as view

    with lab.sessions() as s:
        a, b = view.compared(s, batch_ref, compare)
        level_name = analysis.LEVEL_NAMES[analysis.batch_info(s, batch_ref)["treatment"]]
    ka, kb = paired(a, b, condition)
    fits = pd_concat(
        [analysis.dose_response(k, "all", "none").assign(attributor=k["attributor"].iloc[0]) for k in (ka, kb)]
    )
    ratio = d50_ratio(a, b, condition)
    if fmt == "json":
        print_json(
            {
                "batch": a["batch_id"].iloc[0],
                "method": analysis.FIT_METHOD,
                "fits": view_plain(fits),
                "ratio": view_plain(ratio),
            }
        )
    elif fmt == "csv":
        ratio.to_csv(sys.stdout, index=False)
    else:
        levels = study_view.tested_levels(ka)
        for key, part in fits.groupby("attributor", sort=False):
            console.print(table(f"d50 of {key} on the works both keep", *study_view.d50_rows(part, level_name, levels)))
        console.print(
            table(
                "the ratio of the two d50s (jackknife over images of the log ratio)",
                *view.ratio_rows(ratio, level_name),
            )
        )
        console.print(analysis.FIT_METHOD, highlight=False)
    if plot_dir:
        plot_dir.mkdir(parents=True, exist_ok=True)
        tag = a["batch_id"].iloc[0][:8]
        path = view.attributor_curves(
            {k["attributor"].iloc[0]: k for k in (ka, kb)}, "none", level_name, plot_dir / f"attributors-{tag}.png", tag
        )
        if path:
            click.echo(f"wrote {path}")


def pd_concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


@results_group.command("dose-response")
@click.argument("batch_ref")
@click.option("--by", type=click.Choice(tuple(analysis.D50_GROUPS)), default="style-artist", show_default=True)
@CONDITION
@ATTRIBUTOR
@COMPARE
@PLOT
@FORMAT
@pass_lab
def dose_response_cmd(lab, batch_ref, by, condition, attributor, compare, plot_dir, fmt) -> None:
    """d50 per group: the dose at which the style artist overtakes the content artist, on the named answer and on
    the stored probabilities, fitted in log dose, with Fieller's interval over images and the table's family."""
    from orchestrator.reports import attribution as view
    from orchestrator.reports.attributors import read_attributed

    if compare:
        compare_d50(lab, batch_ref, condition, compare, plot_dir, fmt)
        return
    with lab.sessions() as s:
        study = read_attributed(s, batch_ref, condition, attributor)
    fits = analysis.dose_response(study.records, by, condition)
    if fmt == "json":
        print_json({"batch": study.info["batch_id"], "method": analysis.FIT_METHOD, "fits": view.plain(fits)})
    elif fmt == "csv":
        fits.to_csv(sys.stdout, index=False)
    else:
        for line in study.intro:
            console.print(line, highlight=False, style="yellow" if line.startswith("warning") else None)
        levels = view.tested_levels(study.records)
        console.print(table(f"d50 by {by}", *view.d50_rows(fits, study.level_name, levels)))
        for line in (analysis.FIT_METHOD, view.MARK_NOTE, view.D50_FAMILY_NOTE):
            console.print(line, highlight=False)
    if plot_dir:
        from orchestrator.reports import plots

        plot_dir.mkdir(parents=True, exist_ok=True)
        curves = analysis.dose_curves(study.records, by, condition)
        tag = study.info["batch_id"][:8]
        path = plots.d50_curves(curves, fits, by, study.level_name, plot_dir / f"dose-response-{tag}-{by}.png", tag)
        if path:
            click.echo(f"wrote {path}")


@results_group.command("attributors")
@click.argument("batch_ref")
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def attributors_cmd(lab, batch_ref, as_json) -> None:
    """The attributors that answered a batch's works (`atelier attribute`), the batch's own classifier first."""
    from analysis.attributors import attributors_of

    with lab.sessions() as s:
        frame = attributors_of(s, batch_ref)
    rows = frame.to_dict("records")
    if as_json:
        print_json([{k: (int(v) if k == "stylizations" else v) for k, v in r.items()} for r in rows])
        return
    console.print(
        table(
            "attributors",
            ("key", "kind", "stylizations answered"),
            [[r["key"], r["kind"], str(r["stylizations"])] for r in rows],
        )
    )


@results_group.command("export")
@click.argument("batch_ref")
@click.option("--format", "fmt", type=click.Choice(("csv", "parquet")), default="csv", show_default=True)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The file to write (default for csv: standard output; parquet needs it).",
)
@click.option(
    "--attributor",
    default=None,
    help="Whose answers: an attributor's key or its prefix (`results attributors`); the works it answered, with an "
    "`attributor` column [default: the batch's classifier, every work].",
)
@pass_lab
def export_cmd(lab, batch_ref, fmt, out, attributor) -> None:
    """Every stylization and matched control of a batch with its full record (one table; `record` says which)."""
    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet writes a file: give --out FILE")
    with lab.sessions() as s:
        if attributor is None:
            frame = analysis.export_frame(s, batch_ref)
        else:
            from analysis.attributors import export_attributed

            frame = export_attributed(s, batch_ref, attributor)
    if fmt == "csv":
        frame.to_csv(out if out else sys.stdout, index=False)
    else:
        try:
            frame.to_parquet(out, index=False)
        except ImportError as exc:
            raise ConfigError(f"parquet needs pyarrow ({exc}); pip install pyarrow, or use --format csv") from None
    if out:
        click.echo(f"wrote {out}: {len(frame)} records", err=True)


COMMANDS = [results_group]
