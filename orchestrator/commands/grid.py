"""`atelier grid`: a hyperparameter sweep, one job per cell.

In feature-extract mode the backbone runs once per (dataset, backbone, image
size, augmentation, views, weights) in a `features` job; every cell waits for
it and trains only its head on the stored maps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import click
from sqlalchemy import select

from db import jobs
from db.engine import in_slices
from db.models import Job, Run, Sweep, SweepCell
from core import messages
from orchestrator.commands.common import console, pass_lab, print_json, table
from orchestrator.commands.dataset import get_dataset
from orchestrator.commands.train import WEIGHTS_HELP, resolve_weights
from orchestrator.commands.wait import wait_for_group
from orchestrator.gridspec import MAX_CELLS, check_max_cells, count, expand, parse_values
from core import weights as names
from core.artifacts import features_path
from core.config import ARCHS, METRICS, TrainConfig, check_feature_views, default_image_size
from core.errors import ConfigError

# Options that may take lists and ranges: (option name, type, default).
AXES = {
    "head": (str, "gap"),
    "dense1": (int, None),
    "dense2": (int, None),
    "lr": (float, "1e-4"),
    "dropout": (float, "0.5"),
    "optimizer": (str, "adam"),
    "epochs": (int, "10"),
    "batch_size": (int, "32"),
    "weight_decay": (float, "0"),
    "augment": (str, "none"),
    "seed": (int, "0"),
}
# The features job draws the augmented views from this seed; every cell's config records it.
FEATURES_SEED = 0


@dataclass
class Cell:
    index: int
    values: dict  # this cell's axis values
    config: TrainConfig


def cell_config(arch: str, num_classes: int, image_size: int, mode: str, metric: str, weights: str | None,
                values: dict, views: int = 1) -> TrainConfig:
    dense = tuple(d for d in (values.get("dense1"), values.get("dense2")) if d)
    # A feature-extract cell trains on stored views; without augmentation the features job stores only view 0.
    cached_views = views if mode == "feature-extract" and values["augment"] != "none" else 1
    return TrainConfig(
        arch=arch, num_classes=num_classes, epochs=values["epochs"], batch_size=values["batch_size"], lr=values["lr"],
        image_size=image_size, mode=mode, head=values["head"], dense=dense, dropout=values["dropout"], weights=weights,
        optimizer=values["optimizer"], weight_decay=values["weight_decay"], augment=values["augment"], metric=metric,
        seed=values["seed"], views=cached_views, features_seed=FEATURES_SEED,
    )


def axis_option(name: str):
    flag = "--" + name.replace("_", "-")
    kind, default = AXES[name]
    return click.option(flag, name, default=default, show_default=True,
                        help=f"{kind.__name__} values: a list (a,b) and/or inclusive start:step:stop ranges.")


def grid_options(f):
    for name in reversed(list(AXES)):
        f = axis_option(name)(f)
    return f


@click.command("grid")
@click.option("--dataset", "dataset_name", required=True)
@click.option("--arch", required=True, type=click.Choice(ARCHS))
@click.option("--mode", type=click.Choice(("feature-extract", "fine-tune")), default="feature-extract", show_default=True)
@click.option("--image-size", type=click.IntRange(16), default=None)
@click.option("--views", type=click.IntRange(1, 64), default=1, show_default=True,
              help="feature-extract: views cached per training image (view 0 is plain); "
                   "an --augment preset other than none needs at least 2.")
@click.option("--weights", default=None, help=WEIGHTS_HELP)
@click.option("--metric", type=click.Choice(METRICS), default="macro_f1", show_default=True,
              help="Validation metric each cell trains to (best checkpoint, plateau, early stop) and that ranks "
                   "the cells: leaderboard, --finetune-top, heatmap.")
@grid_options
@click.option("--finetune-top", type=click.IntRange(0), default=0, show_default=True,
              help="When the cells are done, fine-tune the K best end to end.")
@click.option("--finetune-lr-scale", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True)
@click.option("--max-cells", type=click.IntRange(1), default=MAX_CELLS, show_default=True)
@click.option("--force", is_flag=True, help="Run every cell again even if an identical one succeeded.")
@click.option("--dry-run", is_flag=True, help="Print the cells and their count; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help='Print {"sweep": ID, "cells": N}.')
@click.option("--wait", is_flag=True)
@pass_lab
def grid_cmd(lab, dataset_name, arch, mode, image_size, views, weights, metric, finetune_top, finetune_lr_scale,
             max_cells, force, dry_run, as_json, wait, **axis_text) -> None:
    """Sweep head hyperparameters over a grid; prints the sweep id."""
    axes = {name: parse_values(name.replace("_", "-"), text, AXES[name][0])
            for name, text in axis_text.items() if text is not None}
    n = count(axes)
    check_max_cells(n, max_cells)
    check_views(mode, axes.get("augment", ["none"]), views)
    image_size = image_size or default_image_size(arch)
    weights = weights or names.default_spec(arch)
    with lab.sessions() as s:
        ds = get_dataset(s, dataset_name)
        dataset_id, num_classes = ds.id, len(ds.classes)
    cells = []
    for i, values in enumerate(expand(axes)):
        values = {**{k: None for k in ("dense1", "dense2")}, **values}
        cfg = cell_config(arch, num_classes, image_size, mode, metric, weights, values, views)
        cfg.model_config().validate()
        cells.append(Cell(i, {k: v for k, v in values.items() if v is not None}, cfg))
    if dry_run:
        axis_names = list(axes)
        console.print(table(f"{n} cells", ("cell", *axis_names), [(c.index, *(c.values.get(k) for k in axis_names)) for c in cells]))
        return
    weights = resolve_weights(lab, arch, weights)  # before any row: unavailable weights fail here and leave none
    cells = [replace(c, config=replace(c.config, weights=weights.name)) for c in cells]
    spec = {"dataset": dataset_name, "arch": arch, "mode": mode, "image_size": image_size, "views": views,
            "weights": weights.to_json(), "metric": metric, "axes": axes, "finetune_lr_scale": finetune_lr_scale}
    sweep_id, to_send, reused = submit_sweep(lab, dataset_id, arch, spec, cells, weights, finetune_top, force)
    if as_json:
        print_json({"sweep": sweep_id, "cells": n})
    else:
        click.echo(f"sweep {sweep_id}: {n} cells queued ({reused} reused from earlier sweeps)")
    if wait:
        wait_for_group(lab, sweep_id, "sweep")


def check_views(mode: str, augments: list[str], views: int) -> None:
    """Refuse, before anything is written, a grid whose cells would not train on what they record."""
    if mode == "feature-extract":
        for augment in augments:
            check_feature_views(augment, views)
    elif views != 1:
        raise ConfigError(f"--views applies to --mode feature-extract only: {mode} cells augment every batch on the fly")


def _reusable(session, kind: str, params: dict) -> Job | None:
    return session.scalars(
        select(Job).where(Job.kind == kind, Job.params_hash == jobs.params_hash(kind, params), Job.status == "succeeded")
        .order_by(Job.finished_at.desc()).limit(1)
    ).first()


def _finished_runs(session, hashes: list[str]) -> dict[str, tuple[str, int]]:
    """params hash -> (job id, run id) of the latest succeeded train job with those params."""
    found: dict[str, tuple[str, int]] = {}
    for part in in_slices(hashes):
        rows = session.execute(
            select(Job.params_hash, Job.id, Run.id).join(Run, Run.job_id == Job.id)
            .where(Job.kind == "train", Job.status == "succeeded", Job.params_hash.in_(part))
            .order_by(Job.finished_at)
        ).all()
        found.update({h: (job_id, run_id) for h, job_id, run_id in rows})  # the latest wins
    return found


def submit_sweep(lab, dataset_id, arch, spec, cells: list[Cell], weights, finetune_top, force):
    """Commit the sweep, its features jobs and one job per cell; then send what can run now.

    Rows are added in bulk and flushed twice (jobs and runs, then the run ids into
    the jobs), not once per cell: a 1,000-cell grid is one short transaction.
    """
    celery = lab.celery()  # the broker must be reachable before anything is committed
    to_send: list[Job] = []
    with lab.sessions.begin() as s:
        sweep = Sweep(dataset_id=dataset_id, arch=arch, spec=spec, spec_hash=jobs.params_hash("sweep", spec),
                      finetune_top=finetune_top, metric=spec["metric"])
        s.add(sweep)
        s.flush()
        features: dict[tuple, tuple[str | None, str]] = {}  # feature key -> (job id or None if done, file)
        planned = []
        for cell in cells:
            cfg = cell.config
            params = {"dataset": spec["dataset"], "dataset_id": dataset_id, "arch": arch, "config": cfg.to_json(),
                      "cell": cell.index, "weights": weights.to_json()}
            depends_on = None
            if cfg.mode == "feature-extract":
                key = (cfg.image_size, cfg.augment, cfg.views, cfg.features_seed)
                if key not in features:
                    features[key] = _features_job(s, sweep.id, dataset_id, arch, cfg, weights, force, to_send)
                depends_on, params["features"] = features[key]
            planned.append((cell, params, depends_on, jobs.params_hash("train", params)))
        done = {} if force else _finished_runs(s, [h for *_, h in planned])

        created = []
        for cell, params, depends_on, h in planned:
            if h in done:
                job_id, run_id = done[h]
                s.add(SweepCell(sweep_id=sweep.id, cell_index=cell.index, cell=cell.values, job_id=job_id,
                                run_id=run_id, reused=True))
                continue
            job = jobs.new_job("train", params, max_attempts=lab.settings.max_attempts)
            job.group_id, job.depends_on = sweep.id, depends_on
            created.append((cell, job, Run(job_id=job.id, dataset_id=dataset_id, arch=arch, config=params["config"],
                                              weights=weights.name, weights_sha256=weights.sha256)))
        s.add_all([job for _, job, _ in created])
        s.add_all([run for *_, run in created])
        s.flush()  # one batched INSERT per table; the runs get their ids
        for cell, job, run in created:
            job.params = {**job.params, "run_id": run.id}
            s.add(SweepCell(sweep_id=sweep.id, cell_index=cell.index, cell=cell.values, job_id=job.id, run_id=run.id))
            if job.depends_on is None:
                to_send.append(job)
    messages.send(celery, to_send)
    return sweep.id, to_send, len(planned) - len(created)


def _features_job(s, sweep_id, dataset_id, arch, cfg: TrainConfig, weights, force, to_send):
    params = {"dataset_id": dataset_id, "arch": arch, "image_size": cfg.image_size, "augment": cfg.augment,
              "views": cfg.views, "weights": weights.to_json(), "seed": cfg.features_seed}
    output = features_path(jobs.params_hash("features", params)).as_posix()
    done = None if force else _reusable(s, "features", {**params, "output": output})
    if done is not None:
        return None, output
    job = jobs.create_job(s, "features", {**params, "output": output})
    job.group_id = sweep_id
    to_send.append(job)
    return job.id, output


COMMANDS = [grid_cmd]
