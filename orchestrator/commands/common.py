"""Helpers shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.table import Table

from orchestrator.consoles import console  # noqa: F401  (re-exported: the command modules import it from here)

pass_lab = click.pass_obj  # the Lab built by the root group


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    return t


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


def duration(start, end) -> str:
    if start is None:
        return "-"
    from db.models import utcnow

    seconds = ((end or utcnow()) - start).total_seconds()
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"
