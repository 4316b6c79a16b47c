"""`atelier db`: the store's schema."""

from __future__ import annotations

import click

from core.settings import redact
from db.engine import make_engine
from db.migrate import current_revision, head_revision, upgrade
from orchestrator.commands.common import pass_lab


@click.group("db")
def db_group() -> None:
    """Manage the SQL store."""


@db_group.command("upgrade")
@pass_lab
def upgrade_cmd(lab) -> None:
    """Apply pending migrations (other commands do this on first use)."""
    engine = make_engine(lab.settings.database_url)
    try:
        ran = upgrade(engine)
    finally:
        engine.dispose()
    click.echo(
        f"{redact(lab.settings.database_url)}: {'upgraded to' if ran else 'already at'} revision {head_revision()}"
    )


@db_group.command("current")
@pass_lab
def current_cmd(lab) -> None:
    """Print the store's schema revision."""
    engine = make_engine(lab.settings.database_url)
    try:
        click.echo(current_revision(engine) or "empty")
    finally:
        engine.dispose()


COMMANDS = [db_group]
