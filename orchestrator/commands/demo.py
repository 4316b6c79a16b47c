"""`atelier demo`: the whole loop from nothing, on this machine."""

from __future__ import annotations

import subprocess
import sys

import click
from sqlalchemy import select

from db.models import Dataset
from db.readonly import run_query
from orchestrator.commands.common import console, table
from orchestrator.commands.dataset import synth_cmd
from orchestrator.commands.train import submit_train
from orchestrator.commands.wait import wait_for_jobs

METRICS_SQL = (
    "SELECT epoch, phase, round(loss, 4) AS loss, round(top1, 3) AS top1, round(top2, 3) AS top2, "
    "round(macro_f1, 3) AS macro_f1, lr FROM epoch_metrics WHERE run_id = {run} ORDER BY epoch, phase"
)


@click.command("demo")
@click.option("--arch", default="resnet18", show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=6, show_default=True)
@click.option("--image-size", type=click.IntRange(16), default=64, show_default=True)
@click.option("--per-artist", type=click.IntRange(3), default=40, show_default=True)
@click.pass_context
def demo_cmd(ctx, arch, epochs, image_size, per_artist) -> None:
    """Broker, one local worker, a synthetic 6-artist dataset, a small classifier, its metrics."""
    lab = ctx.obj
    lab.celery()  # starts the embedded broker when none is configured
    with lab.sessions() as s:
        exists = s.scalar(select(Dataset.id).where(Dataset.name == "demo")) is not None
    if not exists:
        ctx.invoke(synth_cmd, name="demo", artists=6, per_artist=per_artist, seed=0, size=96, out=None,
                   split_text="0.7,0.15,0.15")
    log = lab.settings.home / "demo-worker.log"
    console.print(f"starting a local worker (log: {log})")
    with log.open("ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker"], stdout=out, stderr=subprocess.STDOUT)
    try:
        job_id, run_id = submit_train(lab, "demo", dict(
            arch=arch, epochs=epochs, batch_size=32, lr=1e-3, image_size=image_size, augment="crop-flip",
        ))
        console.print(f"training run {run_id} (job {job_id})")
        wait_for_jobs(lab, [job_id])
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    sql = METRICS_SQL.format(run=run_id)
    result = run_query(lab.settings.database_url, sql)
    console.print(table(f"run {run_id}: metrics per epoch", result.columns, result.rows))
    console.print("Query them yourself:")
    console.print(f'  atelier query "{sql}"')
    console.print("  atelier results runs")


COMMANDS = [demo_cmd]
