"""`atelier results`: what the runs achieved."""

from __future__ import annotations

import click
from sqlalchemy import select

from pathlib import Path

from db.models import Dataset, EpochMetric, Job, Run
from orchestrator import plots
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
        plot_dir.mkdir(parents=True, exist_ok=True)
        written = [plots.training_curves(epochs, plot_dir / f"run-{run_id}-curves.png", f"run {run_id} {run.arch} on {ds.name}")]
        if run.test_confusion:
            written.append(plots.confusion_matrix(run.test_confusion, ds.classes, plot_dir / f"run-{run_id}-confusion.png",
                                                  f"run {run_id}: test confusion"))
        for p in written:
            click.echo(f"wrote {p}")


COMMANDS = [results_group]
