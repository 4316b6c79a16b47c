"""`atelier query`: read-only SQL against the store."""

from __future__ import annotations

import csv
import json
import sys

import click

from db.readonly import run_query
from orchestrator.commands.common import console, pass_lab, table


@click.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many rows.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=60.0,
    show_default=True,
    help="Stop the query after this many seconds.",
)
@pass_lab
def query_cmd(lab, sql, fmt, limit, timeout) -> None:
    """Run one read-only SQL statement; writes are refused by the connection."""
    _ = lab.engine  # make sure the schema (and its views) exist
    result = run_query(lab.settings.database_url, sql, limit, timeout=timeout)
    if fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(result.columns)
        w.writerows(result.rows)
    elif fmt == "json":
        click.echo(json.dumps([dict(zip(result.columns, r)) for r in result.rows], ensure_ascii=False, default=str))
    else:
        console.print(table(None, result.columns, result.rows))


COMMANDS = [query_cmd]
