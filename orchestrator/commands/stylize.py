"""`atelier stylize`: paint artist A's style onto artist B's works, in chunked jobs.

The options become one ``StyleBatchRequest`` here; ``orchestrator.jobs.style_batch`` checks, plans and submits it.
"""

from __future__ import annotations

import click

from core.config import MAX_DEVICE_BATCH, STYLE_INITS, STYLE_LOSSES, STYLE_OPTIMIZERS, STYLE_POOLS, StyleConfig
from core.style_batch import DEFAULT_DOSES, Sampling, Treatment
from orchestrator.commands.common import pass_lab, print_json
from orchestrator.jobs.gridspec import parse_values
from orchestrator.jobs.progress import wait_for_group
from orchestrator.jobs.style_batch import DEFAULT_NORM_IMAGES, StyleBatchRequest, submit_style_batch

DOSES_TEXT = ",".join(f"{d:g}" for d in DEFAULT_DOSES)


@click.command("stylize")
@click.option("--dataset", "dataset_name", required=True)
@click.option(
    "--classifier",
    "classifier_run",
    type=int,
    required=True,
    help="Run whose best checkpoint classifies: a full run or a feature-extract grid cell.",
)
@click.option(
    "--pairs",
    "pairs_spec",
    default="cross-artist",
    show_default=True,
    help="cross-artist, all (same-artist pairs too, reported apart) or a CSV file with columns content,style.",
)
@click.option(
    "--per-cell",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Distinct pairs per (style artist, content artist); refused if a cell holds fewer.",
)
@click.option("--split", type=click.Choice(("train", "val", "test")), default="test", show_default=True)
@click.option(
    "--dose",
    default=None,
    help=f"Scale-free doses (list or range) [default: {DOSES_TEXT}]: each pair's beta puts its style term at "
    "dose x its content term at the pair's reference noise, so a dose is one treatment for every pair.",
)
@click.option(
    "--style-weight",
    default=None,
    help="Raw beta values instead of doses, to reproduce the paper (one beta is another dose for every pair).",
)
@click.option("--content-weight", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--tv-weight", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True)
@click.option("--size", type=click.IntRange(16), default=256, show_default=True, help="Long side in pixels.")
@click.option(
    "--optimizer",
    type=click.Choice(STYLE_OPTIMIZERS),
    default=StyleConfig.optimizer,
    show_default=True,
    help="lbfgs-onepass: L-BFGS with each pair's line search spread over its steps, one evaluation per step; "
    "lbfgs: the same line search inside each step (a batch pays for any pair's backtracks); lbfgs-unit: a unit "
    "step, no line search (docs/benchmarks.md).",
)
@click.option(
    "--init",
    type=click.Choice(STYLE_INITS),
    default="noise",
    show_default=True,
    help="noise: the paper's white noise; content: start from the content image.",
)
@click.option(
    "--pool",
    type=click.Choice(STYLE_POOLS),
    default="avg",
    show_default=True,
    help="avg: the paper's choice; max: the network as trained.",
)
@click.option(
    "--loss",
    type=click.Choice(STYLE_LOSSES),
    default="gatys",
    show_default=True,
    help="gatys: the paper's E_l and layer weights 1/5; tutorial: the PyTorch tutorial's MSEs.",
)
@click.option("--vgg", type=click.Choice(("vgg19", "vgg16")), default="vgg19", show_default=True)
@click.option(
    "--vgg-weights",
    default="imagenet",
    show_default=True,
    help="'imagenet' (torchvision's, cached or imported), an imported name, a file, or 'random'.",
)
@click.option(
    "--norm-images",
    type=click.IntRange(0),
    default=DEFAULT_NORM_IMAGES,
    show_default=True,
    help="Normalise the VGG as Gatys et al. did (each filter's mean activation 1; the network's function is "
    "unchanged) over this many train images drawn across every artist; 0 leaves the weights as they are.",
)
@click.option(
    "--chunk",
    type=click.IntRange(1),
    default=MAX_DEVICE_BATCH,
    show_default=True,
    help="Pairs per job: enough to fill a large GPU's device batch.",
)
@click.option(
    "--device-batch",
    type=click.IntRange(1),
    default=None,
    help="Pairs optimised together [default: as many as the worker's GPU has free memory for; 4 on a CPU].",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"batch": ID, "pairs": N, "jobs": M}.')
@click.option("--wait", is_flag=True)
@pass_lab
def stylize_cmd(lab, as_json: bool, wait: bool, **options) -> None:
    """Stylize many (content, style) pairs and classify them; prints the batch id."""
    submitted = submit_style_batch(lab, style_request(**options))
    if as_json:
        print_json({"batch": submitted.batch_id, "pairs": submitted.stylizations, "jobs": len(submitted.job_ids)})
    else:
        for line in submitted.summary():
            click.echo(line)
    if wait and submitted.job_ids:
        wait_for_group(lab, submitted.batch_id, "batch")


def style_request(
    *,
    dataset_name: str,
    classifier_run: int,
    pairs_spec: str,
    per_cell: int,
    split: str,
    dose: str | None,
    style_weight: str | None,
    content_weight: float,
    tv_weight: float,
    steps: int,
    size: int,
    optimizer: str,
    init: str,
    pool: str,
    loss: str,
    vgg: str,
    vgg_weights: str,
    norm_images: int,
    chunk: int,
    device_batch: int | None,
    seed: int,
) -> StyleBatchRequest:
    """The command's options as one typed request; every option is named, none passed on unread."""
    style = StyleConfig(
        vgg=vgg,
        content_weight=content_weight,
        tv_weight=tv_weight,
        init=init,
        pool=pool,
        loss=loss,
        optimizer=optimizer,
        steps=steps,
        size=size,
        seed=seed,
    )
    doses = parse_values("dose", dose, float) if dose is not None else None
    betas = parse_values("style-weight", style_weight, float) if style_weight is not None else None
    return StyleBatchRequest(
        dataset=dataset_name,
        classifier_run=classifier_run,
        style=style,
        treatment=Treatment.of(doses, betas),
        sampling=Sampling(pairs_spec, per_cell, split),
        vgg_weights=vgg_weights,
        norm_images=norm_images,
        chunk=chunk,
        device_batch=device_batch,
    )


COMMANDS = [stylize_cmd]
