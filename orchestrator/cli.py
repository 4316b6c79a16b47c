"""The `atelier` command line: the root group and error handling.

Each command group lives in its own module under orchestrator/commands/. A
domain error (``ConfigError``) or an unreachable store becomes one line on
stderr and exit status 1; click's own usage errors exit 2. No tracebacks for
user errors.
"""

from __future__ import annotations

import logging

import click
from sqlalchemy.exc import OperationalError

from core.errors import ConfigError, one_line
from core.settings import Settings
from orchestrator.commands import (
    attribute,
    broker,
    control,
    dataset,
    db,
    demo,
    flower,
    grid,
    query,
    report,
    results,
    status,
    stylize,
    train,
    weights,
    worker,
)
from orchestrator.lab import Lab


class AtelierGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            raise click.ClickException(one_line(str(err))) from None
        except OperationalError as err:
            # The driver's message spans lines ("...refused\n\tIs the server running..."): join them.
            reason = " ".join(str(err.orig).split())
            raise click.ClickException(one_line(f"the store is not reachable: {reason}")) from None


@click.group(cls=AtelierGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log what happens underneath.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """atelier: artist-attribution experiments on paintings, run on Celery GPU workers."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
    except ConfigError as err:
        raise click.ClickException(one_line(str(err))) from None
    ctx.obj = Lab(settings)
    ctx.call_on_close(ctx.obj.close)


for module in (
    db,
    dataset,
    train,
    grid,
    stylize,
    attribute,
    worker,
    status,
    control,
    results,
    report,
    query,
    broker,
    flower,
    demo,
    weights,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli(prog_name="atelier")
