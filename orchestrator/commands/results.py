"""`atelier results`: what the runs achieved."""

from __future__ import annotations

import click
from sqlalchemy import select

from db.models import Dataset, Job, Run
from orchestrator.commands.common import console, pass_lab, print_json, table

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


COMMANDS = [results_group]
