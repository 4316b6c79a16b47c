"""`atelier demo`: the whole study from nothing, on this machine, in a few minutes on a CPU.

A synthetic dataset, a classifier, a small cross-artist style batch over three doses, and the
attribution table with the SQL behind it. Its optimisations start from the content image, so its
few steps at 48 px give recognisable pictures (the study's default is the paper's white noise). ImageNet weights are used when they are on record
or in the torch cache; otherwise the demo says so and uses random init (a demo of the
machinery, not a finding). What the demo starts (a worker, the embedded Redis) it stops.
"""

from __future__ import annotations

import subprocess
import sys

import click
from sqlalchemy import select

from core import weights as names
from core.config import StyleConfig
from core.errors import ConfigError
from core.style_batch import Sampling, Treatment
from db.models import Dataset
from db.readonly import run_query
from orchestrator.commands.common import console, table
from orchestrator.commands.dataset import synth_cmd
from orchestrator.commands.report import report_cmd
from orchestrator.commands.results import attribution_cmd
from orchestrator.jobs.gridspec import parse_values
from orchestrator.jobs.progress import wait_for_group, wait_for_jobs
from orchestrator.jobs.style_batch import StyleBatchRequest, submit_style_batch
from orchestrator.jobs.submit import submit_train
from orchestrator.jobs.weights import resolve as resolve_weights_spec
from orchestrator.services import broker

METRICS_SQL = (
    "SELECT epoch, phase, round(loss, 4) AS loss, round(top1, 3) AS top1, round(top2, 3) AS top2, "
    "round(macro_f1, 3) AS macro_f1, lr FROM epoch_metrics WHERE run_id = {run} ORDER BY epoch, phase"
)
ATTRIBUTION_SQL = (
    "SELECT level AS dose, n AS stylizations, pairs, round(content_rate, 3) AS content_rate, "
    "round(style_rate, 3) AS style_rate, round(other_rate, 3) AS other_rate FROM attribution_by_weight "
    "WHERE batch_id = '{batch}' ORDER BY level"
)
# The demo's doses: from content-named to style-named on its synthetic paintings (measured: README, "Quick start").
DEMO_DOSES = "0.01,1,100"


def weights_or_random(lab, arch: str) -> str:
    """``imagenet`` when this machine has it on record or cached; else ``random``, said out loud."""
    try:
        resolve_weights_spec(lab, arch, names.IMAGENET, offline=True)
        return names.IMAGENET
    except ConfigError:
        console.print(
            f"[yellow]no ImageNet weights for {arch} on record or cached: the demo uses random init "
            f"(`atelier weights import FILE --arch {arch}` to use real ones)[/]"
        )
        return names.RANDOM


@click.command("demo")
@click.option("--arch", default="resnet18", show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=6, show_default=True)
@click.option("--image-size", type=click.IntRange(16), default=64, show_default=True)
@click.option("--per-artist", type=click.IntRange(3), default=40, show_default=True)
@click.option(
    "--style-size", type=click.IntRange(16), default=48, show_default=True, help="Long side of stylized works."
)
@click.option("--style-steps", type=click.IntRange(1), default=40, show_default=True)
@click.option("--dose", default=DEMO_DOSES, show_default=True, help="The scale-free doses of the style batch.")
@click.pass_context
def demo_cmd(ctx, arch, epochs, image_size, per_artist, style_size, style_steps, dose) -> None:
    """Broker, one local worker, a synthetic 6-artist dataset, a classifier, a style batch, the attribution table."""
    lab = ctx.obj
    started_broker = lab.settings.embedded_broker and not broker.ping(lab.settings)
    lab.celery()  # starts the embedded broker when none is configured
    ensure_dataset(ctx, lab, per_artist)
    log = lab.settings.home / "demo-worker.log"
    console.print(f"starting a local worker (log: {log})")
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        run_id = train_classifier(lab, arch, epochs, image_size)
        batch = stylize_batch(lab, run_id, style_size, style_steps, dose)
        show_results(ctx, lab, batch)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        if started_broker:
            broker.stop(lab.settings)
            console.print("stopped the local worker and the embedded Redis the demo started")
        else:
            console.print(
                "stopped the local worker; the broker was already running and stays up "
                "(`atelier broker stop` stops an embedded one)"
            )


def ensure_dataset(ctx, lab, per_artist: int) -> None:
    """The synthetic 6-artist dataset ``demo``, made once."""
    with lab.sessions() as s:
        if s.scalar(select(Dataset.id).where(Dataset.name == "demo")) is not None:
            return
    ctx.invoke(
        synth_cmd, name="demo", artists=6, per_artist=per_artist, seed=0, size=96, out=None, split_text="0.7,0.15,0.15"
    )


def train_classifier(lab, arch: str, epochs: int, image_size: int) -> int:
    """Train the demo's classifier to the end and print its metrics per epoch; returns the run id."""
    weights = weights_or_random(lab, arch)
    config = dict(
        arch=arch, epochs=epochs, batch_size=32, lr=1e-3, image_size=image_size, augment="crop-flip", weights=weights
    )
    job_id, run_id = submit_train(lab, "demo", config)
    console.print(f"training run {run_id} (job {job_id}), {arch} from {weights} weights")
    wait_for_jobs(lab, [job_id])
    sql = METRICS_SQL.format(run=run_id)
    result = run_query(lab.settings.database_url, sql)
    console.print(table(f"run {run_id}: metrics per epoch", result.columns, result.rows))
    console.print(f'  atelier query "{sql}"', highlight=False)
    return run_id


def stylize_batch(lab, run_id: int, size: int, steps: int, dose: str) -> str:
    """One pair per (style artist, content artist) at each dose, started from the content image."""
    vgg_weights = weights_or_random(lab, "vgg19")
    console.print(
        f"stylizing one pair per (style artist, content artist) at doses {dose}. The demo starts each "
        "optimisation from the content image (`--init content`), so its few steps give recognisable pictures; "
        "the study's default is the paper's white noise."
    )
    request = StyleBatchRequest(
        dataset="demo",
        classifier_run=run_id,
        style=StyleConfig(steps=steps, size=size, init="content"),
        treatment=Treatment.of(parse_values("dose", dose, float)),
        sampling=Sampling("cross-artist", per_cell=1, split="test"),
        vgg_weights=vgg_weights,
        norm_images=18,
        chunk=30,
        device_batch=30,
    )
    submitted = submit_style_batch(lab, request)
    for line in submitted.summary():
        click.echo(line)
    if submitted.job_ids:
        wait_for_group(lab, submitted.batch_id, "batch")
    return submitted.batch_id


def show_results(ctx, lab, batch: str) -> None:
    """The attribution table, the same counts from the view with its SQL, and the batch report."""
    ctx.invoke(attribution_cmd, batch_ref=batch)  # every option at its default
    sql = ATTRIBUTION_SQL.format(batch=batch)
    result = run_query(lab.settings.database_url, sql)
    console.print(table("the same counts from the view", result.columns, result.rows))
    console.print(f'  atelier query "{sql}"', highlight=False)
    console.print("  atelier results runs; atelier results attribution BATCH --by pair --plot DIR")
    # The same study as one page: the table with its queries, the plots, the works grouped by outcome.
    ctx.invoke(report_cmd, ref=batch, out=lab.settings.home / f"report-batch-{batch[:8]}", per_outcome=12, seed=0)


COMMANDS = [demo_cmd]
