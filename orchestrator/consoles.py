"""The CLI's two rich consoles: tables on stdout, progress bars and notices on stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Piped or captured output gets wide tables instead of columns folded to nothing.
_WIDTH = None if sys.stdout.isatty() else 240
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)
