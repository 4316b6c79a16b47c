"""docs/cli.md, the CLI reference: every command's ``--help``, as click prints it, on one page.

    python -m scripts.cli_reference          # rewrite docs/cli.md
    python -m scripts.cli_reference --check  # exit 1 when docs/cli.md differs from the CLI

Generated, not written: the options are declared once, in ``orchestrator/commands/``, and
tests/unit/test_cli_reference.py fails when the page and ``--help`` part ways. The help is
formatted at a fixed width, so the page does not depend on the terminal that wrote it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from orchestrator.cli import cli

PAGE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
PROG = "atelier"
WIDTH = 100  # characters per help line, whatever the terminal
REGENERATE = "python -m scripts.cli_reference"


def _contexts(command: click.Command, ctx: click.Context) -> Iterator[click.Context]:
    """A context for ``command`` and, depth first in click's listing order, for every visible subcommand."""
    yield ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _contexts(sub, click.Context(sub, info_name=name, parent=ctx))


def _anchor(title: str) -> str:
    """The fragment GitHub gives a heading made of words and spaces."""
    return title.lower().replace(" ", "-")


def render(root: click.Command = cli) -> str:
    """The whole page as text: a contents list, then one section per command with its help."""
    top = click.Context(root, info_name=PROG, terminal_width=WIDTH, max_content_width=WIDTH)
    contexts = list(_contexts(root, top))
    lines = [
        "# CLI reference",
        "",
        f"<!-- Generated from the click commands by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "Every `atelier` command with its `--help`. What the commands are for, with examples, is in",
        "[usage.md](usage.md); the settings they read are in [cluster.md](cluster.md#configuration).",
        "",
    ]
    lines += [f"- [`{c.command_path}`](#{_anchor(c.command_path)})" for c in contexts]
    for ctx in contexts:
        lines += ["", f"## {ctx.command_path}", "", "```text", ctx.command.get_help(ctx).rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/cli.md differs, write nothing")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE} differs from the CLI's --help: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
