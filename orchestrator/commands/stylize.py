"""`atelier stylize`: paint artist A's style onto artist B's works, in chunked jobs."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import click
from sqlalchemy import select

from core import weights as names
from core.artifacts import artifact_path
from core.config import MAX_DEVICE_BATCH, STYLE_INITS, STYLE_LOSSES, STYLE_OPTIMIZERS, STYLE_POOLS, StyleConfig
from core.errors import ConfigError
from core.params import batch_spec
from core.weights import sha256_file
from db.models import Image, Job, Run
from orchestrator.commands.common import pass_lab, print_json
from orchestrator.jobs.gridspec import parse_values
from orchestrator.jobs.lookups import get_dataset
from orchestrator.jobs.pairs import MODES, read_pairs, sample_pairs
from orchestrator.jobs.progress import wait_for_group
from orchestrator.jobs.submit import plan_pairs, submit_batch
from orchestrator.jobs.weights import resolve as resolve_weights_spec

# Scale-free doses (worker.ml.dose: the style term's size relative to the content term's at the pair's reference
# noise). 0 is the null dose (a reconstruction); the rest, a decade apart, span the flip from content to style
# artist measured on real paintings with real weights (docs/findings.md): at 64 px the style
# artist overtakes near dose 1, at 128 px between 10 and 1000, so the grid reaches 1000.
DEFAULT_DOSES = "0,0.1,1,10,100,1000"
# Filters' mean activations for the normalisation, over this many train images drawn across every artist.
DEFAULT_NORM_IMAGES = 64


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
    help=f"Scale-free doses (list or range) [default: {DEFAULT_DOSES}]: each pair's beta puts its style term at "
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
    default="lbfgs",
    show_default=True,
    help="lbfgs: per-pair line search; lbfgs-onepass / lbfgs-unit: one evaluation per step (bench/stylize.py).",
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
def stylize_cmd(lab, dataset_name, classifier_run, pairs_spec, per_cell, split, dose, style_weight, **options) -> str:
    """Stylize many (content, style) pairs and classify them; prints the batch id."""
    doses, betas = treatments(dose, style_weight)
    chunk, device_batch, norm_images = options.pop("chunk"), options.pop("device_batch"), options.pop("norm_images")
    as_json, wait, vgg_weights = options.pop("as_json"), options.pop("wait"), options.pop("vgg_weights")
    style = StyleConfig(**options)
    with lab.sessions() as s:
        ds = get_dataset(s, dataset_name)
        run = pinned_classifier(s, classifier_run, ds.id)
        images = s.execute(
            select(Image.id, Image.path, Image.label, Image.split).where(
                Image.dataset_id == ds.id, Image.status == "ok"
            )
        ).all()
        dataset_id, checkpoint = ds.id, run.checkpoint_path
    if pairs_spec in MODES:
        by_artist: dict[str, list[int]] = {}
        for im in images:
            if im.split == split:
                by_artist.setdefault(im.label, []).append(im.id)
        pairs = sample_pairs(by_artist, pairs_spec, per_cell, seed=style.seed)
    else:
        pairs = read_pairs(Path(pairs_spec), {im.path: im.id for im in images})
    # Resolved before anything is written: no cached weights (offline) is one line and no rows.
    vgg_record = resolve_weights_spec(lab, style.vgg, vgg_weights)
    norm = vgg_norm(vgg_record, style, [(im.id, im.label) for im in images if im.split == "train"], norm_images)
    sampling = {"pairs": pairs_spec, "per_cell": per_cell, "split": split}
    sha = sha256_file(artifact_path(lab.settings.artifacts, checkpoint))
    spec = batch_spec(dataset_name, classifier_run, style, doses, betas, vgg_record, norm, sampling, sha)
    todo = plan_pairs(pairs, spec)
    batch_id, job_ids = submit_batch(lab, dataset_id, spec, todo, chunk, device_batch)
    levels = doses if doses is not None else betas
    if as_json:
        print_json({"batch": batch_id, "pairs": len(todo), "jobs": len(job_ids)})
    else:
        click.echo(
            f"batch {batch_id}: {len(todo)} stylizations ({len(set(pairs))} pairs x {len(levels)} "
            f"{'doses' if doses is not None else 'raw betas'}) in {len(job_ids)} jobs; VGG {style.vgg} weights "
            f"{vgg_record.label()}; classifier run {classifier_run} (checkpoint sha256 {sha[:12]})"
        )
        if vgg_record.is_random:
            click.echo(names.random_warning("the style VGG", style.vgg))
    if wait and job_ids:
        wait_for_group(lab, batch_id, "batch")
    return batch_id  # for callers that invoke the command (the demo)


def treatments(dose: str | None, style_weight: str | None) -> tuple[list[float] | None, list[float] | None]:
    """(doses, None) or (None, raw betas): the two are never mixed in one batch."""
    if dose is not None and style_weight is not None:
        raise ConfigError("give --dose or --style-weight, not both: a batch's strata are doses or raw betas")
    if style_weight is not None:
        betas = parse_values("style-weight", style_weight, float)
        if any(not math.isfinite(w) or w < 0 for w in betas):
            raise ConfigError("--style-weight values must be finite and non-negative")
        return None, betas
    doses = parse_values("dose", dose or DEFAULT_DOSES, float)
    if any(not math.isfinite(d) or d < 0 for d in doses):
        raise ConfigError("--dose values must be finite and non-negative")
    return doses, None


def pinned_classifier(session, run_id: int, dataset_id: int) -> Run:
    """The run that classifies: trained to the end (its best checkpoint is final), on this dataset."""
    run = session.get(Run, run_id)
    if run is None:
        raise ConfigError(f"no run {run_id}")
    job = session.get(Job, run.job_id)
    if job.status != "succeeded" or run.checkpoint_path is None:
        raise ConfigError(f"run {run_id} has not finished training (job {job.status}): its checkpoint may still change")
    if run.dataset_id != dataset_id:
        raise ConfigError(f"run {run_id} was trained on another dataset")
    return run


def vgg_norm(record, style: StyleConfig, train: list[tuple[int, str]], n: int) -> dict | None:
    """The batch's VGG normalisation: ``n`` train images (seeded, drawn in turn from every artist, so no
    artist's filters dominate) and a key naming weights, images and size."""
    if n == 0:
        return None
    if not train:
        raise ConfigError("--norm-images needs images in the dataset's train split; give --norm-images 0 to skip")
    rng = random.Random(style.seed)
    by_artist: dict[str, list[int]] = {}
    for image_id, label in sorted(train):
        by_artist.setdefault(label, []).append(image_id)
    for ids in by_artist.values():
        rng.shuffle(ids)
    queues = [by_artist[a] for a in sorted(by_artist)]
    chosen: list[int] = []
    while len(chosen) < min(n, len(train)):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop())
    chosen.sort()
    # Random weights are drawn from the style seed: it names the network as a sha256 names a file.
    what = {"vgg": style.vgg, "weights": record.sha256 or f"random:{style.seed}", "images": chosen, "size": style.size}
    what["normalisation"] = "compensated-capped-v2"  # factors from before the exact normalisation are not reused
    return {"key": hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32], "images": chosen}


COMMANDS = [stylize_cmd]
