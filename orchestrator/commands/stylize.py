"""`atelier stylize`: paint artist A's style onto artist B's works, in chunked jobs."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import click
from sqlalchemy import insert, select

from db import jobs
from db.engine import in_slices
from db.models import Image, Run, StyleBatch, StyleBatchPair, Stylization
from core import messages
from orchestrator.commands.common import pass_lab, print_json
from orchestrator.commands.dataset import get_dataset
from orchestrator.commands.wait import wait_for_group
from orchestrator.gridspec import parse_values
from orchestrator.pairs import MODES, read_pairs, sample_pairs
from core import weights as names
from orchestrator.weights import resolve as resolve_weights_spec
from core.config import STYLE_INITS, STYLE_LOSSES, STYLE_POOLS, StyleConfig
from core.errors import ConfigError


# Doses: a null dose (beta = 0: the optimisation reconstructs the content alone) and then beta/alpha over
# orders of magnitude, from content-dominated to style-dominated on real paintings with the normalised
# ImageNet VGG19 (README, "Checked on real paintings"); the paper's alpha/beta of 1e-3 and 1e-4 are inside.
DEFAULT_DOSES = "0,1e2,1e3,1e4,1e5"


@click.command("stylize")
@click.option("--dataset", "dataset_name", required=True)
@click.option("--classifier", "classifier_run", type=int, required=True,
              help="Run whose best checkpoint classifies: a full run or a feature-extract grid cell.")
@click.option("--pairs", "pairs_spec", default="cross-artist", show_default=True,
              help="cross-artist, all (same-artist pairs too, reported apart) or a CSV file with columns content,style.")
@click.option("--per-cell", type=click.IntRange(1), default=5, show_default=True,
              help="Pairs per (style artist, content artist).")
@click.option("--split", type=click.Choice(("train", "val", "test")), default="test", show_default=True)
@click.option("--style-weight", default=DEFAULT_DOSES, show_default=True,
              help="beta values (list or range); each is its own stratum of the analysis.")
@click.option("--content-weight", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--tv-weight", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True)
@click.option("--size", type=click.IntRange(16), default=256, show_default=True, help="Long side in pixels.")
@click.option("--optimizer", type=click.Choice(("lbfgs", "adam")), default="lbfgs", show_default=True)
@click.option("--init", type=click.Choice(STYLE_INITS), default="noise", show_default=True,
              help="noise: the paper's white noise; content: start from the content image.")
@click.option("--pool", type=click.Choice(STYLE_POOLS), default="avg", show_default=True,
              help="avg: the paper's choice; max: the network as trained.")
@click.option("--loss", type=click.Choice(STYLE_LOSSES), default="gatys", show_default=True,
              help="gatys: the paper's E_l and layer weights 1/5; tutorial: the PyTorch tutorial's MSEs.")
@click.option("--vgg", type=click.Choice(("vgg19", "vgg16")), default="vgg19", show_default=True)
@click.option("--vgg-weights", default="imagenet", show_default=True,
              help="'imagenet' (torchvision's, cached or imported), an imported name, a file, or 'random'.")
@click.option("--norm-images", type=click.IntRange(0), default=32, show_default=True,
              help="Normalise the VGG as Gatys et al. did (each filter's mean activation 1) over this many "
                   "train images of the dataset; 0 leaves the weights as they are.")
@click.option("--chunk", type=click.IntRange(1), default=64, show_default=True, help="Pairs per job.")
@click.option("--device-batch", type=click.IntRange(1), default=16, show_default=True, help="Pairs optimised together.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"batch": ID, "pairs": N, "jobs": M}.')
@click.option("--wait", is_flag=True)
@pass_lab
def stylize_cmd(lab, dataset_name, classifier_run, pairs_spec, per_cell, split, style_weight, content_weight, tv_weight,
                steps, size, optimizer, init, pool, loss, vgg, vgg_weights, norm_images, chunk, device_batch, seed,
                as_json, wait) -> str:
    """Stylize many (content, style) pairs and classify them; prints the batch id."""
    weights = parse_values("style-weight", style_weight, float)
    if any(w < 0 for w in weights):
        raise ConfigError("--style-weight values must be non-negative")
    style = StyleConfig(vgg=vgg, content_weight=content_weight, tv_weight=tv_weight, init=init, pool=pool, loss=loss,
                        optimizer=optimizer, steps=steps, size=size, seed=seed)
    with lab.sessions() as s:
        ds = get_dataset(s, dataset_name)
        run = s.get(Run, classifier_run)
        if run is None or run.checkpoint_path is None:
            raise ConfigError(f"run {classifier_run} has no trained checkpoint")
        if run.dataset_id != ds.id:
            raise ConfigError(f"run {classifier_run} was trained on another dataset")
        images = s.execute(select(Image.id, Image.path, Image.label, Image.split)
                           .where(Image.dataset_id == ds.id, Image.status == "ok")).all()
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
    spec = {"dataset": dataset_name, "pairs": pairs_spec, "per_cell": per_cell, "split": split, "style_weights": weights,
            "style": vars(style), "vgg_weights": vgg_record.to_json(), "vgg_norm": norm,
            "classifier_run_id": classifier_run}
    todo = []
    for content_id, style_id in pairs:
        # One seed per (content, style): a pair's doses start from the same noise, so beta is all that differs.
        pair_seed = int(hashlib.sha256(f"{content_id}:{style_id}".encode()).hexdigest()[:8], 16) >> 1  # fits an int32
        for w in weights:
            key = {"content": content_id, "style": style_id, "style_weight": w, "seed": pair_seed, "style_cfg": vars(style),
                   "vgg_weights": vgg_record.sha256 or f"random:{seed}", "vgg_norm": norm["key"] if norm else None,
                   "classifier": classifier_run}
            todo.append({"content": content_id, "style": style_id, "style_weight": w, "seed": pair_seed,
                         "hash": jobs.params_hash("pair", key)})
    todo = list({q["hash"]: q for q in todo}.values())  # a pair named twice is stylized once
    batch_id, n_jobs, job_ids = submit_batch(lab, dataset_id, classifier_run, spec, todo, chunk, device_batch)
    if as_json:
        print_json({"batch": batch_id, "pairs": len(todo), "jobs": n_jobs})
    else:
        click.echo(f"batch {batch_id}: {len(todo)} stylizations ({len(set(pairs))} pairs x {len(weights)} doses) "
                   f"in {n_jobs} jobs; VGG {vgg} weights {vgg_record.label()}")
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


def submit_batch(lab, dataset_id, run_id, spec, todo, chunk, device_batch):
    """Commit the batch, one job per chunk and a row per pair; then send the jobs.

    Pair rows go in with one multi-row INSERT: 20,000 pairs are one short transaction.
    """
    celery = lab.celery()  # the broker must be reachable before anything is committed
    created = []
    with lab.sessions.begin() as s:
        batch = StyleBatch(dataset_id=dataset_id, classifier_run_id=run_id, spec=spec)
        s.add(batch)
        s.flush()
        done = set()
        for part in in_slices([q["hash"] for q in todo]):
            done.update(s.scalars(select(Stylization.pair_hash).where(Stylization.pair_hash.in_(part))))
        fresh = [q for q in todo if q["hash"] not in done]
        pair_rows = [{"batch_id": batch.id, "pair_hash": h, "job_id": None} for h in done]
        for start in range(0, len(fresh), chunk):
            part = fresh[start:start + chunk]
            job = jobs.new_job("stylize", {
                "batch_id": batch.id, "classifier_run_id": run_id, "style": spec["style"],
                "vgg_weights": spec["vgg_weights"], "vgg_norm": spec["vgg_norm"],
                "pairs": part, "device_batch": device_batch, "dataset": spec["dataset"], "chunk": start // chunk,
            }, queue="gpu", max_attempts=lab.settings.max_attempts)
            job.group_id = batch.id
            pair_rows += [{"batch_id": batch.id, "pair_hash": q["hash"], "job_id": job.id} for q in part]
            created.append(job)
        s.add_all(created)
        s.flush()  # the jobs exist before the pair rows that name them
        if pair_rows:
            s.execute(insert(StyleBatchPair), pair_rows)
        batch_id = batch.id
    messages.send(celery, created)
    return batch_id, len(created), [j.id for j in created]


COMMANDS = [stylize_cmd]
