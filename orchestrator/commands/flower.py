"""`atelier flower`: Flower on the configured broker, behind basic auth, read-only."""

from __future__ import annotations

import click

from core.errors import ConfigError
from core.messages import configure
from orchestrator.commands.common import pass_lab


@click.command("flower")
@click.option("--port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
@pass_lab
def flower_cmd(lab, port, address) -> None:
    """Monitor the workers (user and password from ATELIER_FLOWER_USER / ATELIER_FLOWER_PASSWORD)."""
    if not lab.settings.flower_password:
        raise ConfigError("set ATELIER_FLOWER_PASSWORD: Flower never runs without authentication")
    lab.celery()  # checks the broker (and starts the embedded one)
    from orchestrator.services.flower_routes import make_read_only

    # A plain client app: Flower learns the task names from the workers' events, not from importing the tasks.
    celery = configure(lab.settings)
    make_read_only()  # the job table is the truth: nothing may revoke or send tasks behind it

    celery.start(
        [
            "flower",
            f"--port={port}",
            f"--address={address}",
            f"--basic-auth={lab.settings.flower_user}:{lab.settings.flower_password}",
        ]
    )


COMMANDS = [flower_cmd]
