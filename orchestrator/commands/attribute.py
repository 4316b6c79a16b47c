"""`atelier attribute`: show a stored batch's works to more attributors, without stylizing again (issue 31).

The options become one ``AttributeRequest``; ``orchestrator.jobs.attribute`` checks, plans and submits it.
"""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.commands.common import pass_lab, print_json
from orchestrator.jobs.attribute import DEFAULT_CHUNK, AttributeRequest, submit_attribute


@click.command("attribute")
@click.argument("batch_ref")
@click.option(
    "--classifier",
    "classifiers",
    type=int,
    multiple=True,
    help="A finished run or grid cell on the batch's dataset (repeatable); pinned by its checkpoint's sha256.",
)
@click.option(
    "--style-space", is_flag=True, help="Nearest artist centroid of the VGG Grams (relu1_1-relu5_1), by the style loss."
)
@click.option(
    "--content-space",
    is_flag=True,
    help="Nearest artist centroid of pooled relu4_2 features (cosine); also each work's closeness to its sources.",
)
@click.option("--embedding", default=None, help="A network registered by this name (with --factory, --weights).")
@click.option("--factory", default=None, help="package.module:function building the embedding from its weights.")
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The embedding's safetensors file.",
)
@click.option("--chunk", type=click.IntRange(1), default=DEFAULT_CHUNK, show_default=True, help="Pictures per job.")
@click.option("--json", "as_json", is_flag=True, help='Print {"batch": ID, "attributors": [{key, todo, done, jobs}]}.')
@click.option("--wait", is_flag=True)
@pass_lab
def attribute_cmd(
    lab, batch_ref, classifiers, style_space, content_space, embedding, factory, weights, chunk, as_json, wait
) -> None:
    """Answer a batch's stored stylizations and matched controls with more attributors; prints each one's key."""
    request = AttributeRequest(
        batch_ref, tuple(classifiers), style_space, content_space, embedding, factory, weights, chunk
    )
    batch_id, plans = submit_attribute(lab, request)
    rows = [
        {
            "key": p.attributor.key,
            "kind": p.attributor.kind,
            "todo": len(p.stylizations) + len(p.controls),
            "done": p.done,
            "jobs": p.jobs,
        }
        for p in plans
    ]
    if as_json:
        print_json({"batch": batch_id, "attributors": rows})
    else:
        for r in rows:
            click.echo(
                f"{r['key']} ({r['kind']}) on batch {batch_id[:8]}: {r['todo']} pictures to answer in "
                f"{len(r['jobs'])} jobs, {r['done']} answered before"
            )
    if wait and any(r["jobs"] for r in rows):
        from orchestrator.jobs.progress import wait_for_group

        wait_for_group(lab, batch_id, "batch")


COMMANDS = [attribute_cmd]
