"""`atelier weights`: the backbone weights every worker can load, and importing a file for offline machines."""

from __future__ import annotations

from pathlib import Path

import click

from core import weights as names
from db import weights as registry
from orchestrator.commands.common import console, pass_lab, print_json, table
from orchestrator.jobs import weights

LIST_COLUMNS = ("arch", "name", "sha256", "source", "path", "features only", "present")


@click.group("weights")
def weights_group() -> None:
    """Weight files kept under the artifacts root, known by their sha256 (what `--weights` names)."""


@weights_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Full sha256 and paths, one object per file.")
@pass_lab
def list_cmd(lab, as_json) -> None:
    """What every worker can load: arch, name, source, sha256, and whether this host sees the file."""
    with lab.sessions() as s:
        rows = registry.listing(s, lab.settings.artifacts)
    if as_json:
        print_json(rows)
        return
    console.print(
        table(
            f"weights under {lab.settings.artifacts}",
            LIST_COLUMNS,
            [
                (
                    r["arch"],
                    r["name"],
                    r["sha256"][:12],
                    r["source"],
                    r["path"],
                    "yes" if r["features_only"] else "no",
                    "yes" if r["present"] else "MISSING",
                )
                for r in rows
            ],
        )
    )
    if not rows:
        click.echo(
            "none yet: `--weights imagenet` records torchvision's file on first use (cached or downloaded); "
            "offline, `atelier weights import FILE --arch A`"
        )


@weights_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--arch",
    required=True,
    type=click.Choice(names.WEIGHT_ARCHS),
    help="The architecture the file is for (a style VGG: vgg19, vgg16).",
)
@click.option(
    "--name",
    default=names.IMAGENET,
    show_default=True,
    help="What --weights will call it; 'imagenet' for torchvision's ImageNet file (or its features).",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"arch", "name", "sha256", "path"}.')
@pass_lab
def import_cmd(lab, file, arch, name, as_json) -> None:
    """Check FILE against ARCH (safetensors, or a torch file read with weights_only) and keep it for every worker.

    Every backbone tensor must be in FILE with its shape; torchvision's classifier may be there or not (a
    features-only file, only `features.*` for VGG and AlexNet, is complete). The backbone is copied under the
    artifacts root as safetensors and recorded with its sha256, so `--weights NAME` finds it on every host.
    """
    record = weights.import_file(lab, file.resolve(), arch, name)
    if as_json:
        print_json({"arch": arch, **record.to_json()})
        return
    click.echo(f"{file} -> {arch} {record.label()} at {record.path}")
    if record.name != name:
        click.echo(f"the same {arch} tensors were already recorded as {record.name!r}: use --weights {record.name}")


COMMANDS = [weights_group]
