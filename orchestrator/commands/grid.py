"""`atelier grid`: a hyperparameter sweep, one job per cell.

In feature-extract mode the backbone runs once per (dataset, backbone, image
size, augmentation, views, weights) in a `features` job; every cell waits for
it and trains only its head on the stored maps.
"""

from __future__ import annotations

import click

from core import weights as names
from core.config import ARCHS, METRICS, TrainConfig, check_feature_views, default_image_size
from core.errors import ConfigError
from orchestrator.commands.common import console, pass_lab, print_json, table
from orchestrator.commands.train import WEIGHTS_HELP
from orchestrator.jobs.gridspec import MAX_CELLS, check_max_cells, count, expand, parse_values
from orchestrator.jobs.lookups import get_dataset
from orchestrator.jobs.progress import wait_for_group
from orchestrator.jobs.submit import Cell, submit_sweep
from orchestrator.jobs.weights import resolve as resolve_weights

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


def cell_config(
    arch: str,
    num_classes: int,
    image_size: int,
    mode: str,
    metric: str,
    weights: str | None,
    values: dict,
    views: int = 1,
) -> TrainConfig:
    dense = tuple(d for d in (values.get("dense1"), values.get("dense2")) if d)
    # A feature-extract cell trains on stored views; without augmentation the features job stores only view 0.
    cached_views = views if mode == "feature-extract" and values["augment"] != "none" else 1
    return TrainConfig(
        arch=arch,
        num_classes=num_classes,
        epochs=values["epochs"],
        batch_size=values["batch_size"],
        lr=values["lr"],
        image_size=image_size,
        mode=mode,
        head=values["head"],
        dense=dense,
        dropout=values["dropout"],
        weights=weights,
        optimizer=values["optimizer"],
        weight_decay=values["weight_decay"],
        augment=values["augment"],
        metric=metric,
        seed=values["seed"],
        views=cached_views,
        features_seed=FEATURES_SEED,
    )


def axis_option(name: str):
    flag = "--" + name.replace("_", "-")
    kind, default = AXES[name]
    return click.option(
        flag,
        name,
        default=default,
        show_default=True,
        help=f"{kind.__name__} values: a list (a,b) and/or inclusive start:step:stop ranges.",
    )


def grid_options(f):
    for name in reversed(list(AXES)):
        f = axis_option(name)(f)
    return f


@click.command("grid")
@click.option("--dataset", "dataset_name", required=True)
@click.option("--arch", required=True, type=click.Choice(ARCHS))
@click.option(
    "--mode", type=click.Choice(("feature-extract", "fine-tune")), default="feature-extract", show_default=True
)
@click.option("--image-size", type=click.IntRange(16), default=None)
@click.option(
    "--views",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="feature-extract: views cached per training image (view 0 is plain); "
    "an --augment preset other than none needs at least 2.",
)
@click.option("--weights", default=None, help=WEIGHTS_HELP)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    default="macro_f1",
    show_default=True,
    help="Validation metric each cell trains to (best checkpoint, plateau, early stop) and that ranks "
    "the cells: leaderboard, --finetune-top, heatmap.",
)
@grid_options
@click.option(
    "--finetune-top",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="When the cells are done, fine-tune the K best end to end.",
)
@click.option("--finetune-lr-scale", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True)
@click.option("--max-cells", type=click.IntRange(1), default=MAX_CELLS, show_default=True)
@click.option("--force", is_flag=True, help="Run every cell again even if an identical one succeeded.")
@click.option("--dry-run", is_flag=True, help="Print the cells and their count; submit nothing.")
@click.option("--json", "as_json", is_flag=True, help='Print {"sweep": ID, "cells": N}.')
@click.option("--wait", is_flag=True)
@pass_lab
def grid_cmd(
    lab,
    dataset_name,
    arch,
    mode,
    image_size,
    views,
    weights,
    metric,
    finetune_top,
    finetune_lr_scale,
    max_cells,
    force,
    dry_run,
    as_json,
    wait,
    **axis_text,
) -> None:
    """Sweep head hyperparameters over a grid; prints the sweep id."""
    axes = {
        name: parse_values(name.replace("_", "-"), text, AXES[name][0])
        for name, text in axis_text.items()
        if text is not None
    }
    n = count(axes)
    check_max_cells(n, max_cells)
    check_views(mode, axes.get("augment", ["none"]), views)
    image_size = image_size or default_image_size(arch)
    weights = weights or names.default_spec(arch)
    with lab.sessions() as s:
        ds = get_dataset(s, dataset_name)
        dataset_id, num_classes = ds.id, len(ds.classes)
    cells = build_cells(axes, arch, num_classes, image_size, mode, metric, weights, views)
    if dry_run:
        print_cells(cells, list(axes))
        return
    weights = resolve_weights(lab, arch, weights)  # before any row: unavailable weights fail here and leave none
    spec = {
        "dataset": dataset_name,
        "arch": arch,
        "mode": mode,
        "image_size": image_size,
        "views": views,
        "weights": weights.to_json(),
        "metric": metric,
        "axes": axes,
        "finetune_lr_scale": finetune_lr_scale,
    }
    sweep_id, reused = submit_sweep(lab, dataset_id, spec, cells, weights, finetune_top, force)
    if as_json:
        print_json({"sweep": sweep_id, "cells": n})
    else:
        click.echo(f"sweep {sweep_id}: {n} cells queued ({reused} reused from earlier sweeps)")
    if wait:
        wait_for_group(lab, sweep_id, "sweep")


def build_cells(
    axes: dict, arch: str, num_classes: int, image_size: int, mode: str, metric: str, weights: str, views: int
) -> list[Cell]:
    """One validated cell per point of the grid; a bad combination fails here, before any row is written."""
    cells = []
    for i, values in enumerate(expand(axes)):
        values = {**{k: None for k in ("dense1", "dense2")}, **values}
        cfg = cell_config(arch, num_classes, image_size, mode, metric, weights, values, views)
        cfg.model_config().validate()
        cells.append(Cell(i, {k: v for k, v in values.items() if v is not None}, cfg))
    return cells


def print_cells(cells: list[Cell], axis_names: list[str]) -> None:
    """--dry-run: one row per cell, one column per axis."""
    rows = [(c.index, *(c.values.get(k) for k in axis_names)) for c in cells]
    console.print(table(f"{len(cells)} cells", ("cell", *axis_names), rows))


def check_views(mode: str, augments: list[str], views: int) -> None:
    """Refuse, before anything is written, a grid whose cells would not train on what they record."""
    if mode == "feature-extract":
        for augment in augments:
            check_feature_views(augment, views)
    elif views != 1:
        raise ConfigError(
            f"--views applies to --mode feature-extract only: {mode} cells augment every batch on the fly"
        )


COMMANDS = [grid_cmd]
