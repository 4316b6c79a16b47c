"""`atelier results`: what the runs achieved."""

from __future__ import annotations

import json

import click
from sqlalchemy import select, text

from pathlib import Path

from db.models import Dataset, EpochMetric, Image, Job, Run
from orchestrator.commands.common import console, pass_lab, print_json, table
from worker.ml.errors import ConfigError

RUN_COLUMNS = ("run", "dataset", "arch", "mode", "status", "best epoch", "val top1", "val top2", "val F1", "test top1", "test F1")


@click.group("results")
def results_group() -> None:
    """Metrics of runs (and later of grids and style batches)."""


def run_rows(session, dataset: str | None = None) -> list[tuple]:
    q = (select(Run, Dataset.name, Job.status).join(Dataset, Run.dataset_id == Dataset.id).join(Job, Run.job_id == Job.id)
         .order_by(Run.id))
    if dataset:
        q = q.where(Dataset.name == dataset)
    return [(r.id, name, r.arch, r.config.get("mode"), status, r.best_epoch, r.best_val_top1, r.best_val_top2,
             r.best_val_macro_f1, r.test_top1, r.test_macro_f1) for r, name, status in session.execute(q)]


@results_group.command("runs")
@click.option("--dataset", default=None)
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def runs_cmd(lab, dataset, as_json) -> None:
    """A row per run with its best validation top-1 and macro-F1."""
    with lab.sessions() as s:
        rows = run_rows(s, dataset)
    if as_json:
        print_json([dict(zip(RUN_COLUMNS, r)) for r in rows])
    else:
        console.print(table(None, RUN_COLUMNS, rows))


@results_group.command("run")
@click.argument("run_id", type=int)
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write training curves and the confusion matrix as PNG here.")
@pass_lab
def run_cmd(lab, run_id, plot_dir) -> None:
    """One run: its configuration, the per-epoch curve and the test confusion matrix."""
    with lab.sessions() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise ConfigError(f"no run {run_id}")
        ds = s.get(Dataset, run.dataset_id)
        job = s.get(Job, run.job_id)
        epochs = [dict(epoch=e.epoch, phase=e.phase, stage=e.stage, loss=e.loss, top1=e.top1, top2=e.top2,
                       macro_f1=e.macro_f1, lr=e.lr) for e in
                  s.scalars(select(EpochMetric).where(EpochMetric.run_id == run_id).order_by(EpochMetric.epoch, EpochMetric.phase))]
    console.print(f"[bold]run {run.id}[/] on {ds.name}: {run.arch}, job {job.id} {job.status}")
    console.print(table("configuration", ("option", "value"), sorted(run.config.items())))
    console.print(table("epochs", ("epoch", "phase", "stage", "loss", "top1", "top2", "macro F1", "lr"),
                        [tuple(e.values()) for e in epochs]))
    console.print(table("test (best checkpoint)", ("top1", "top2", "macro F1"), [(run.test_top1, run.test_top2, run.test_macro_f1)]))
    if run.test_confusion:
        console.print(table("confusion matrix (rows: true, columns: predicted)", ("", *ds.classes),
                            [(c, *row) for c, row in zip(ds.classes, run.test_confusion)]))
        console.print(table("per-class F1", ("class", "F1"), zip(ds.classes, run.test_per_class_f1)))
    if plot_dir:
        from orchestrator import plots  # matplotlib costs half a second of start-up: only when plotting

        plot_dir.mkdir(parents=True, exist_ok=True)
        written = [plots.training_curves(epochs, plot_dir / f"run-{run_id}-curves.png", f"run {run_id} {run.arch} on {ds.name}")]
        if run.test_confusion:
            written.append(plots.confusion_matrix(run.test_confusion, ds.classes, plot_dir / f"run-{run_id}-confusion.png",
                                                  f"run {run_id}: test confusion"))
        for p in written:
            click.echo(f"wrote {p}")


GRID_COLUMNS = ("rank", "stage", "cell", "status", "run", "val F1", "val top1", "val top2", "test F1", "test top1")


@results_group.command("grid")
@click.argument("sweep_ref")
@click.option("--top", type=click.IntRange(1), default=None, help="Only the N best cells.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a heatmap of validation F1 over two axes as PNG here.")
@click.option("--x", "x_axis", default="dense1", show_default=True, help="Heatmap column axis.")
@click.option("--y", "y_axis", default="dense2", show_default=True, help="Heatmap row axis.")
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def grid_cmd(lab, sweep_ref, top, plot_dir, x_axis, y_axis, as_json) -> None:
    """Cells of a sweep ranked by validation macro-F1 (the `grid_leaderboard` view)."""
    from orchestrator.commands.status import find_sweep

    with lab.sessions() as s:
        sweep = find_sweep(s, sweep_ref)
        if sweep is None:
            raise ConfigError(f"no sweep {sweep_ref!r}")
        rows = s.execute(text(
            "SELECT rank, stage, cell, status, run_id, val_macro_f1, val_top1, val_top2, test_macro_f1, test_top1 "
            "FROM grid_leaderboard WHERE sweep_id = :sid ORDER BY stage DESC, rank, cell_index"), {"sid": sweep.id}).all()
    rows = [tuple(r) for r in rows]
    rows = [(r[0], r[1], r[2] if isinstance(r[2], dict) else json.loads(r[2]), *r[3:]) for r in rows]
    if top:
        rows = [r for r in rows if r[0] <= top]
    if as_json:
        print_json([dict(zip(GRID_COLUMNS, r)) for r in rows])
    else:
        console.print(table(f"sweep {sweep.id}", GRID_COLUMNS,
                            [(r[0], r[1], " ".join(f"{k}={v}" for k, v in r[2].items()), *r[3:]) for r in rows]))
    if plot_dir:
        from orchestrator import plots  # matplotlib costs half a second of start-up: only when plotting

        plot_dir.mkdir(parents=True, exist_ok=True)
        grid_rows = [r for r in rows if r[1] == "grid"]
        path = plots.grid_heatmap([(r[2], r[5]) for r in grid_rows], x_axis, y_axis,
                                  plot_dir / f"sweep-{sweep.id[:8]}-{y_axis}-{x_axis}.png", f"sweep {sweep.id[:8]}: val macro-F1")
        click.echo(f"wrote {path}")


@results_group.command("attribution")
@click.argument("batch_ref")
@click.option("--by", "by", type=click.Choice(("overall", "style-weight", "pair")), default="style-weight", show_default=True)
@click.option("--all-pairs", is_flag=True, help="Include pairs whose unstylized content image was misclassified.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the style-attribution heatmap, the dose-response curve and a contact sheet as PNG.")
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True)
@pass_lab
def attribution_cmd(lab, batch_ref, by, all_pairs, plot_dir, fmt) -> None:
    """Whom the classifier names for stylized pairs: content / style / other, with Wilson 95% intervals."""
    from db.models import StyleBatch

    with lab.sessions() as s:
        batches = s.scalars(select(StyleBatch).where(StyleBatch.id.startswith(batch_ref)).limit(2)).all()
        if len(batches) != 1:
            raise ConfigError(f"no style batch {batch_ref!r}" if not batches else f"batch prefix {batch_ref!r} is ambiguous")
        batch = batches[0]
        where = "batch_id = :b" + ("" if all_pairs else " AND content_correct")
        pairs = [dict(r._mapping) for r in s.execute(text(f"SELECT * FROM attribution_pairs WHERE {where}"), {"b": batch.id})]
    groups = {"overall": lambda p: ("all",), "style-weight": lambda p: (p["style_weight"],),
              "pair": lambda p: (p["style_artist"], p["content_artist"])}[by]
    keys = {"overall": ("pairs",), "style-weight": ("style weight",), "pair": ("style artist", "content artist")}[by]
    rows = attribution_rows(pairs, groups)
    columns = (*keys, "n", "content", "content 95% CI", "style", "style 95% CI", "other", "other 95% CI")
    out = [(*k, n, *(x for o in OUTCOMES for x in (cells[o][0], f"{cells[o][1]:.2f} [{cells[o][2]:.2f}, {cells[o][3]:.2f}]")))
           for k, n, cells in rows]
    if fmt == "json":
        print_json([dict(zip(columns, r)) for r in out])
    elif fmt == "csv":
        import csv
        import sys

        w = csv.writer(sys.stdout)
        w.writerow(columns)
        w.writerows(out)
    else:
        console.print(table(f"batch {batch.id}: {len(pairs)} pairs" + ("" if all_pairs else " (content image classified correctly)"),
                            columns, out))
    if plot_dir:
        from orchestrator import plots  # matplotlib costs half a second of start-up: only when plotting

        plot_dir.mkdir(parents=True, exist_ok=True)
        with lab.sessions() as s:
            ds = s.get(Dataset, batch.dataset_id)
            ids = {p["content_image_id"] for p in pairs[:8]} | {p["style_image_id"] for p in pairs[:8]}
            originals = {i: Path(ds.root) / path for i, path in s.execute(select(Image.id, Image.path).where(Image.id.in_(ids)))}
        for path in plots.attribution_plots(pairs, attribution_rows(pairs, lambda p: (p["style_weight"],)),
                                            lab.settings.artifacts, originals, plot_dir, batch.id[:8]):
            click.echo(f"wrote {path}")


OUTCOMES = ("content", "style", "other")


def attribution_rows(pairs: list[dict], key) -> list[tuple]:
    """[(group key, n, {outcome: (count, rate, lo, hi)})] sorted by key; intervals are Wilson 95 %."""
    from orchestrator.stats import wilson_interval

    grouped: dict[tuple, list[dict]] = {}
    for p in pairs:
        grouped.setdefault(key(p), []).append(p)
    rows = []
    for k in sorted(grouped, key=lambda t: tuple(str(x) if not isinstance(x, float) else f"{x:020.6f}" for x in t)):
        members = grouped[k]
        n = len(members)
        cells = {}
        for outcome in OUTCOMES:
            hits = sum(p["outcome"] == outcome for p in members)
            cells[outcome] = (hits, hits / n, *wilson_interval(hits, n))
        rows.append((k, n, cells))
    return rows


COMMANDS = [results_group]
