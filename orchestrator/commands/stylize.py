"""`atelier stylize`: paint artist A's style onto artist B's works, in chunked jobs."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import insert, select

from db import jobs
from db.engine import in_slices
from db.models import Image, Job, Run, StyleBatch, StyleBatchPair, Stylization
from orchestrator import enqueue
from orchestrator.commands.common import pass_lab, print_json
from orchestrator.commands.dataset import get_dataset
from orchestrator.commands.wait import wait_for_group
from orchestrator.gridspec import parse_values
from orchestrator.pairs import MODES, read_pairs, sample_pairs
from worker.ml.config import StyleConfig
from worker.ml.errors import ConfigError


@click.command("stylize")
@click.option("--dataset", "dataset_name", required=True)
@click.option("--classifier", "classifier_run", type=int, required=True, help="Run whose best checkpoint classifies.")
@click.option("--pairs", "pairs_spec", default="cross-artist", show_default=True,
              help="cross-artist, all (same-artist pairs too) or a CSV file with columns content,style.")
@click.option("--per-cell", type=click.IntRange(1), default=5, show_default=True,
              help="Pairs per (style artist, content artist).")
@click.option("--split", type=click.Choice(("train", "val", "test")), default="test", show_default=True)
@click.option("--style-weight", default="1e4,1e5,1e6", show_default=True, help="beta values (list or range).")
@click.option("--content-weight", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True)
@click.option("--tv-weight", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True)
@click.option("--size", type=click.IntRange(16), default=256, show_default=True, help="Long side in pixels.")
@click.option("--optimizer", type=click.Choice(("lbfgs", "adam")), default="lbfgs", show_default=True)
@click.option("--init", type=click.Choice(("content", "noise")), default="content", show_default=True)
@click.option("--vgg", type=click.Choice(("vgg19", "vgg16")), default="vgg19", show_default=True)
@click.option("--vgg-weights", default=None, help="'imagenet' (local torch cache) or a weight file; random if unset.")
@click.option("--chunk", type=click.IntRange(1), default=64, show_default=True, help="Pairs per job.")
@click.option("--device-batch", type=click.IntRange(1), default=16, show_default=True, help="Pairs optimised together.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"batch": ID, "pairs": N, "jobs": M}.')
@click.option("--wait", is_flag=True)
@pass_lab
def stylize_cmd(lab, dataset_name, classifier_run, pairs_spec, per_cell, split, style_weight, content_weight, tv_weight,
                steps, size, optimizer, init, vgg, vgg_weights, chunk, device_batch, seed, as_json, wait) -> None:
    """Stylize many (content, style) pairs and classify them; prints the batch id."""
    weights = parse_values("style-weight", style_weight, float)
    if any(w < 0 for w in weights):
        raise ConfigError("--style-weight values must be non-negative")
    style = StyleConfig(vgg=vgg, content_weight=content_weight, tv_weight=tv_weight, init=init, optimizer=optimizer,
                        steps=steps, size=size, seed=seed)
    with lab.sessions() as s:
        ds = get_dataset(s, dataset_name)
        run = s.get(Run, classifier_run)
        if run is None or run.checkpoint_path is None:
            raise ConfigError(f"run {classifier_run} has no trained checkpoint")
        if run.dataset_id != ds.id:
            raise ConfigError(f"run {classifier_run} was trained on another dataset")
        if _is_grid_head(s, run):
            raise ConfigError(f"run {classifier_run} is a grid cell trained on cached features; give a full classifier run")
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
    spec = {"dataset": dataset_name, "pairs": pairs_spec, "per_cell": per_cell, "split": split, "style_weights": weights,
            "style": vars(style), "vgg_weights": vgg_weights, "classifier_run_id": classifier_run}
    todo = []
    for content_id, style_id in pairs:
        for w in weights:
            key = {"content": content_id, "style": style_id, "style_weight": w, "style_cfg": vars(style),
                   "vgg_weights": vgg_weights, "classifier": classifier_run}
            todo.append({"content": content_id, "style": style_id, "style_weight": w, "seed": len(todo),
                         "hash": jobs.params_hash("pair", key)})
    todo = list({q["hash"]: q for q in todo}.values())  # a pair named twice is stylized once
    batch_id, n_jobs, job_ids = submit_batch(lab, dataset_id, classifier_run, spec, todo, chunk, device_batch, vgg_weights)
    if as_json:
        print_json({"batch": batch_id, "pairs": len(todo), "jobs": n_jobs})
    else:
        click.echo(f"batch {batch_id}: {len(todo)} pairs in {n_jobs} jobs")
    if wait and job_ids:
        wait_for_group(lab, batch_id, "batch")


def _is_grid_head(session, run: Run) -> bool:
    job = session.get(Job, run.job_id)
    return "features" in (job.params or {})


def submit_batch(lab, dataset_id, run_id, spec, todo, chunk, device_batch, vgg_weights):
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
                "batch_id": batch.id, "classifier_run_id": run_id, "style": spec["style"], "vgg_weights": vgg_weights,
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
    enqueue.send(celery, created)
    return batch_id, len(created), [j.id for j in created]


COMMANDS = [stylize_cmd]
