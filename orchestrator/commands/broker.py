"""`atelier broker`: the embedded Redis under ATELIER_HOME."""

from __future__ import annotations

import click

from core.settings import redact
from orchestrator.commands.common import pass_lab
from orchestrator.services import broker


@click.group("broker")
def broker_group() -> None:
    """Start, stop or check the embedded Redis broker."""


@broker_group.command("start")
@pass_lab
def start_cmd(lab) -> None:
    started = broker.start(lab.settings)
    click.echo(f"broker {'started' if started else 'already running'} at {lab.settings.redis_socket}")


@broker_group.command("stop")
@pass_lab
def stop_cmd(lab) -> None:
    click.echo("broker stopped" if broker.stop(lab.settings) else "broker was not running")


@broker_group.command("status")
@pass_lab
def status_cmd(lab) -> None:
    up = broker.ping(lab.settings)
    click.echo(f"broker {redact(lab.settings.broker_url)}: {'up' if up else 'down'}")
    if not up:
        raise SystemExit(1)


COMMANDS = [broker_group]
