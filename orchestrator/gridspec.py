"""Grid specifications: value lists and inclusive ``start:step:stop`` ranges, and their product.

Pure logic, so it is tested on its own (with hypothesis) and the CLI only
calls it. ``128:64:512`` is 128, 192, ..., 512; ``1e-4,1e-3`` is a list; both
mix freely: ``32:32:128,300``. ``params_hash`` names a cell's parameters so a
finished cell can be found again and reused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from typing import Any

from core.errors import ConfigError

MAX_CELLS = 10_000
# One range may not expand past this many values: "1:1:1e12" must fail fast, not fill memory.
MAX_RANGE_VALUES = 1_000_000
# A float range's length is (stop - start) / step rounded to the nearest whole number when it
# lies this close (relatively) to one: 0.1:0.1:0.5 is 5 values even though 0.4 / 0.1 < 4.
_REL_TOL = 1e-9
_KINDS = (int, float, str)


def clean_float(x: float) -> float:
    """Round away binary noise (12 significant digits): 0.1 + 0.2 is 0.3, not 0.30000000000000004."""
    cleaned = float(f"{x:.12g}")
    return 0.0 if cleaned == 0 else cleaned  # no -0.0


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


def _canonical(value: Any) -> Any:
    """JSON-ready and normalised: equal numbers look the same (1 == 1.0, 1e-4 == 0.0001 == 0.1**4 rounded)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"parameter value {value!r} is not a finite number")
        if value.is_integer():
            return int(value)
        value = clean_float(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"parameter names must be strings, got {sorted(map(repr, value))}")
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    raise TypeError(f"cannot hash a parameter of type {type(value).__name__}: {value!r}")


def params_hash(params: dict[str, Any]) -> str:
    """sha256 (hex) of canonical JSON: sorted keys, no whitespace, numbers normalised."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    text = json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
