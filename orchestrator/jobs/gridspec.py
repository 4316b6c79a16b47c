"""Grid specifications: value lists and inclusive ``start:step:stop`` ranges, and their product.

Pure logic, so it is tested on its own (with hypothesis) and the CLI only
calls it. ``128:64:512`` is 128, 192, ..., 512; ``1e-4,1e-3`` is a list; both
mix freely: ``32:32:128,300``. (``db.jobs.params_hash`` names a cell's parameters so a
finished cell can be found again and reused.)
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from core.errors import ConfigError
from core.params import clean_float

MAX_CELLS = 10_000
# One range may not expand past this many values: "1:1:1e12" must fail fast, not fill memory.
MAX_RANGE_VALUES = 1_000_000
# A float range's length is (stop - start) / step rounded to the nearest whole number when it
# lies this close (relatively) to one: 0.1:0.1:0.5 is 5 values even though 0.4 / 0.1 < 4.
_REL_TOL = 1e-9
_KINDS = (int, float, str)


def _number(name: str, text: str, kind: type) -> int | float:
    what = "an integer" if kind is int else "a number"
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        raise ConfigError(f"--{name}: {text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"--{name}: {text!r} is not a finite number")
    return value


def _range(name: str, item: str, kind: type) -> list[int | float]:
    parts = [p.strip() for p in item.split(":")]
    if len(parts) != 3:
        raise ConfigError(f"--{name}: {item!r} is not start:step:stop")
    if not all(parts):
        raise ConfigError(f"--{name}: empty part in range {item!r} (start:step:stop)")
    start, step, stop = (_number(name, p, kind) for p in parts)
    if step <= 0:
        raise ConfigError(f"--{name}: step must be positive in {item!r}")
    if start > stop:
        raise ConfigError(f"--{name}: start is after stop in {item!r}")
    if kind is int:
        n = (stop - start) // step + 1
    else:
        if step < max(abs(start), abs(stop)) * 1e-10:
            raise ConfigError(f"--{name}: step is too small for the values in {item!r}")
        steps = (stop - start) / step
        if not steps <= MAX_RANGE_VALUES:  # also inf, when stop - start overflows
            raise ConfigError(f"--{name}: range {item!r} has more than {MAX_RANGE_VALUES} values")
        nearest = round(steps)
        n = (nearest if abs(steps - nearest) <= _REL_TOL * max(1.0, steps) else math.floor(steps)) + 1
    if n > MAX_RANGE_VALUES:
        raise ConfigError(f"--{name}: range {item!r} has {n} values, more than {MAX_RANGE_VALUES}")
    if kind is int:
        return list(range(start, stop + 1, step))
    # The rounding noise of start + i * step is relative to the range's scale, not to the value:
    # -0.9 + 3 * 0.3 is -1.1e-16, which must come out as 0.0. Keep 12 significant digits of that scale.
    digits = 11 - math.floor(math.log10(max(abs(start), abs(stop), step)))
    values = [clean_float(start)] + [clean_float(round(start + i * step, digits)) for i in range(1, n)]
    # Within the tolerance the last value *is* stop: never a hair past it, never a hair short.
    if math.isclose(values[-1], stop, rel_tol=_REL_TOL, abs_tol=step * _REL_TOL):
        values[-1] = clean_float(stop)
    return values


def parse_values(name: str, text: str, kind: type = str) -> list[Any]:
    """The values of one axis (option ``--name``), in order, without duplicates.

    ``text`` is comma-separated items; each is a single value or, for int and
    float, an inclusive ``start:step:stop`` range. Bad input raises ConfigError
    naming the option.
    """
    if kind not in _KINDS:
        raise TypeError(f"kind must be one of int, float, str; got {kind!r}")
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
            value = _number(name, item, kind)
            values.append(clean_float(value) if kind is float else value)
    return list(dict.fromkeys(values))


def count(axes: dict[str, list]) -> int:
    """Cells in the product of ``axes``, without building them (no axes: one empty cell)."""
    return math.prod(len(v) for v in axes.values())


def check_max_cells(n: int, max_cells: int = MAX_CELLS) -> None:
    """Refuse an empty grid, and one larger than ``--max-cells``."""
    if n <= 0:
        raise ConfigError("the grid is empty: an axis has no values")
    if n > max_cells:
        raise ConfigError(f"grid has {n} cells, more than --max-cells {max_cells}")


def expand(axes: dict[str, list]) -> list[dict[str, Any]]:
    """Cartesian product, first axis slowest, values in the order given; the same axes give the same list."""
    empty = [name for name, values in axes.items() if len(values) == 0]
    if empty:
        raise ConfigError(f"the grid is empty: --{empty[0]} has no values")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def split_constant(cells: list[dict]) -> tuple[dict, list[str]]:
    """(the parameters every cell shares, with their value; the names of those that vary), in first-seen order.

    A leaderboard prints the shared ones once above the table and only the varying ones per row: a cell
    column repeating ``epochs=20 lr=0.001 augment=none ...`` on every row hides what differs.
    """
    names = list(dict.fromkeys(k for cell in cells for k in cell))
    constant = {
        k: cells[0][k]
        for k in names
        if cells and all(k in cell for cell in cells) and all(cell[k] == cells[0][k] for cell in cells)
    }
    return constant, [k for k in names if k not in constant]
