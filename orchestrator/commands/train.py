"""`atelier train`: one training run as one job."""

from __future__ import annotations

import click

from core.config import ARCHS, HEADS, METRICS, MODES, PRESETS
from core.errors import ConfigError
from orchestrator.commands.common import pass_lab, print_json
from orchestrator.jobs.progress import wait_for_jobs
from orchestrator.jobs.submit import submit_train


def parse_dense(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--dense takes comma-separated widths like 384,128, got {text!r}") from None
    if any(s <= 0 for s in sizes):
        raise ConfigError(f"--dense widths must be positive, got {text!r}")
    return sizes


WEIGHTS_HELP = (
    "'imagenet' (the default for archs with ImageNet weights: torchvision's file, from the store, the torch "
    "cache or downloaded; offline, see `atelier weights import`), 'random' (explicit random init, warned "
    "about in results; the default for baseline-cnn and logistic, which have no ImageNet weights), a name "
    "from `atelier weights list`, or a weight file (.safetensors, .pt, .pth; imported on the fly)."
)


@click.command("train")
@click.option("--dataset", "dataset_name", required=True, help="A registered dataset.")
@click.option("--arch", required=True, type=click.Choice(ARCHS), help="Backbone.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--image-size", type=click.IntRange(16), default=None, help="Input side in pixels [default: the arch's].")
@click.option("--mode", type=click.Choice(MODES), default="fine-tune", show_default=True)
@click.option("--head", type=click.Choice(HEADS), default="gap", show_default=True)
@click.option("--dense", default=None, help="Dense blocks after pooling, e.g. 384,128.")
@click.option("--dropout", type=float, default=0.5, show_default=True)
@click.option("--optimizer", type=click.Choice(("sgd", "adam", "rmsprop")), default="adam", show_default=True)
@click.option("--augment", type=click.Choice(PRESETS), default="crop-flip", show_default=True)
@click.option("--metric", type=click.Choice(METRICS), default="macro_f1", show_default=True)
@click.option("--weights", default=None, help=WEIGHTS_HELP)
@click.option("--weight-decay", type=click.FloatRange(0), default=0.0, show_default=True)
@click.option(
    "--plateau-patience",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Epochs without improvement of --metric before the LR is cut.",
)
@click.option(
    "--plateau-factor", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True
)
@click.option("--early-stop-patience", type=click.IntRange(1), default=10, show_default=True)
@click.option(
    "--head-epochs",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="staged: epochs training the head on the frozen backbone.",
)
@click.option(
    "--finetune-epochs",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="staged: epochs fine-tuning everything at lr x --finetune-lr-scale.",
)
@click.option("--finetune-lr-scale", type=click.FloatRange(0, 1, min_open=True), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--wait", is_flag=True, help="Show progress until the job ends; exit 1 if it failed.")
@click.option("--json", "as_json", is_flag=True, help='Print {"job": ID, "run": ID}.')
@pass_lab
def train_cmd(
    lab,
    dataset_name,
    arch,
    epochs,
    batch_size,
    lr,
    image_size,
    mode,
    head,
    dense,
    dropout,
    optimizer,
    augment,
    metric,
    weights,
    weight_decay,
    plateau_patience,
    plateau_factor,
    early_stop_patience,
    head_epochs,
    finetune_epochs,
    finetune_lr_scale,
    seed,
    wait,
    as_json,
) -> None:
    """Train a classifier on a dataset: commits a job, enqueues it, prints its id."""
    job_id, run_id = submit_train(
        lab,
        dataset_name,
        dict(
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            image_size=image_size,
            mode=mode,
            head=head,
            dense=parse_dense(dense),
            dropout=dropout,
            weights=weights,
            optimizer=optimizer,
            augment=augment,
            metric=metric,
            weight_decay=weight_decay,
            plateau_patience=plateau_patience,
            plateau_factor=plateau_factor,
            early_stop_patience=early_stop_patience,
            head_epochs=head_epochs,
            finetune_epochs=finetune_epochs,
            finetune_lr_scale=finetune_lr_scale,
            seed=seed,
        ),
    )
    if as_json:
        print_json({"job": job_id, "run": run_id})
    else:
        click.echo(f"job {job_id} (run {run_id}) queued")
    if wait:
        wait_for_jobs(lab, [job_id])


COMMANDS = [train_cmd]
