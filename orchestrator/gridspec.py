"""Grid specifications: value lists and inclusive ``start:step:stop`` ranges, and their product.

Pure logic, so it is tested on its own (with hypothesis) and the CLI only
calls it. ``128:64:512`` is 128, 192, ..., 512; ``1e-4,1e-3`` is a list; both
mix freely: ``32:32:128,300``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from worker.ml.errors import ConfigError

MAX_CELLS = 10_000


def _number(name: str, text: str, kind: type) -> float | int:
    try:
        value = kind(text) if kind is int else float(text)
    except ValueError:
        raise ConfigError(f"--{name}: {text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"--{name}: {text!r} is not a finite number")
    return value


def _clean(x: float) -> float:
    """Round away binary noise so 0.1:0.1:0.3 gives 0.3, not 0.30000000000000004."""
    return float(f"{x:.12g}")


def _range(name: str, item: str, kind: type) -> list:
    parts = item.split(":")
    if len(parts) != 3:
        raise ConfigError(f"--{name}: {item!r} is not start:step:stop")
    start, step, stop = (_number(name, p.strip(), kind) for p in parts)
    if step <= 0:
        raise ConfigError(f"--{name}: step must be positive in {item!r}")
    if start > stop:
        raise ConfigError(f"--{name}: start is after stop in {item!r}")
    n = math.floor((stop - start) / step + 1e-9) + 1  # inclusive of stop when it lies on the grid
    return [kind(start + i * step) if kind is int else _clean(start + i * step) for i in range(n)]


def parse_values(name: str, text: str, kind: type = str) -> list[Any]:
    """The values of one axis, in order, without duplicates."""
    if text is None or not str(text).strip():
        raise ConfigError(f"--{name}: no values given")
    values: list[Any] = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"--{name}: empty item in {text!r}")
        if ":" in item:
            if kind is str:
                raise ConfigError(f"--{name}: ranges need numbers, got {item!r}")
            values.extend(_range(name, item, kind))
        elif kind is str:
            values.append(item)
        else:
            v = _number(name, item, kind)
            values.append(_clean(v) if kind is float else v)
    return list(dict.fromkeys(values))


def count(axes: dict[str, list]) -> int:
    return math.prod(len(v) for v in axes.values())


def check_max_cells(n: int, max_cells: int = MAX_CELLS) -> None:
    if n == 0:
        raise ConfigError("the grid is empty")
    if n > max_cells:
        raise ConfigError(f"grid has {n} cells, more than --max-cells {max_cells}")


def expand(axes: dict[str, list]) -> list[dict[str, Any]]:
    """Cartesian product, first axis slowest; stable for the same axes."""
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]
