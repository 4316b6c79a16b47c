"""`atelier stylize`: paint artist A's style onto artist B's works, in chunked jobs."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import click
from sqlalchemy import select

from core import weights as names
from core.config import STYLE_INITS, STYLE_LOSSES, STYLE_POOLS, StyleConfig
from core.errors import ConfigError
from core.params import batch_spec
from db.models import Image, Run
from orchestrator.commands.common import pass_lab, print_json
from orchestrator.gridspec import parse_values
from orchestrator.lookups import get_dataset
from orchestrator.pairs import MODES, read_pairs, sample_pairs
from orchestrator.progress import wait_for_group
from orchestrator.submit import plan_pairs, submit_batch
from orchestrator.weights import resolve as resolve_weights_spec

# Doses: a null dose (beta = 0: the optimisation reconstructs the content alone) and then beta/alpha over
# orders of magnitude, from content-dominated to style-dominated on real paintings with the normalised
# ImageNet VGG19 (README, "Checked on real paintings"); the paper's alpha/beta of 1e-3 and 1e-4 are inside.
DEFAULT_DOSES = "0,1e2,1e3,1e4,1e5"


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
    "--per-cell", type=click.IntRange(1), default=5, show_default=True, help="Pairs per (style artist, content artist)."
)
@click.option("--split", type=click.Choice(("train", "val", "test")), default="test", show_default=True)
@click.option(
    "--style-weight",
    default=DEFAULT_DOSES,
    show_default=True,
    help="beta values (list or range); each is its own stratum of the analysis.",
)
@click.option("--content-weight", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--tv-weight", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True)
@click.option("--size", type=click.IntRange(16), default=256, show_default=True, help="Long side in pixels.")
@click.option("--optimizer", type=click.Choice(("lbfgs", "adam")), default="lbfgs", show_default=True)
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
    default=32,
    show_default=True,
    help="Normalise the VGG as Gatys et al. did (each filter's mean activation 1) over this many "
    "train images of the dataset; 0 leaves the weights as they are.",
)
@click.option("--chunk", type=click.IntRange(1), default=64, show_default=True, help="Pairs per job.")
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
def stylize_cmd(
    lab,
    dataset_name,
    classifier_run,
    pairs_spec,
    per_cell,
    split,
    style_weight,
    content_weight,
    tv_weight,
    steps,
    size,
    optimizer,
    init,
    pool,
    loss,
    vgg,
    vgg_weights,
    norm_images,
    chunk,
    device_batch,
    seed,
    as_json,
    wait,
) -> str:
    """Stylize many (content, style) pairs and classify them; prints the batch id."""
    weights = parse_values("style-weight", style_weight, float)
    if any(w < 0 for w in weights):
        raise ConfigError("--style-weight values must be non-negative")
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
    with lab.sessions() as s:
        ds = get_dataset(s, dataset_name)
        run = s.get(Run, classifier_run)
        if run is None or run.checkpoint_path is None:
            raise ConfigError(f"run {classifier_run} has no trained checkpoint")
        if run.dataset_id != ds.id:
            raise ConfigError(f"run {classifier_run} was trained on another dataset")
        images = s.execute(
            select(Image.id, Image.path, Image.label, Image.split).where(
                Image.dataset_id == ds.id, Image.status == "ok"
            )
        ).all()
        dataset_id = ds.id
    if pairs_spec in MODES:
        by_artist: dict[str, list[int]] = {}
        for im in images:
            if im.split == split:
                by_artist.setdefault(im.label, []).append(im.id)
        pairs = sample_pairs(by_artist, pairs_spec, per_cell, seed)
    else:
        pairs = read_pairs(Path(pairs_spec), {im.path: im.id for im in images})
    # Resolved before anything is written: no cached weights (offline) is one line and no rows.
    vgg_record = resolve_weights_spec(lab, vgg, vgg_weights)
    norm = vgg_norm(vgg_record, style, [im.id for im in images if im.split == "train"], norm_images)
    spec = batch_spec(
        dataset_name,
        classifier_run,
        style,
        weights,
        vgg_record,
        norm,
        {"pairs": pairs_spec, "per_cell": per_cell, "split": split},
    )
    todo = plan_pairs(pairs, weights, spec)
    batch_id, job_ids = submit_batch(lab, dataset_id, spec, todo, chunk, device_batch)
    if as_json:
        print_json({"batch": batch_id, "pairs": len(todo), "jobs": len(job_ids)})
    else:
        click.echo(
            f"batch {batch_id}: {len(todo)} stylizations ({len(set(pairs))} pairs x {len(weights)} doses) "
            f"in {len(job_ids)} jobs; VGG {vgg} weights {vgg_record.label()}"
        )
        if vgg_record.is_random:
            click.echo(names.random_warning("the style VGG", vgg))
    if wait and job_ids:
        wait_for_group(lab, batch_id, "batch")
    return batch_id  # for callers that invoke the command (the demo)


def vgg_norm(record, style: StyleConfig, train_ids: list[int], n: int) -> dict | None:
    """The batch's VGG normalisation: ``n`` train images (seeded) and a key naming weights, images and size."""
    if n == 0:
        return None
    if not train_ids:
        raise ConfigError("--norm-images needs images in the dataset's train split; give --norm-images 0 to skip")
    chosen = sorted(random.Random(style.seed).sample(sorted(train_ids), min(n, len(train_ids))))
    # Random weights are drawn from the style seed: it names the network as a sha256 names a file.
    what = {"vgg": style.vgg, "weights": record.sha256 or f"random:{style.seed}", "images": chosen, "size": style.size}
    return {"key": hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32], "images": chosen}


COMMANDS = [stylize_cmd]
