import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError
from orchestrator.jobs.gridspec import MAX_CELLS, check_max_cells, count, expand, parse_values


def format_ints(values: list[int]) -> str:
    """The inverse of parse_values for ints: runs of 3+ evenly spaced rising values become start:step:stop."""
    items, i = [], 0
    while i < len(values):
        j = i + 1
        if j < len(values) and values[j] > values[i]:
            step = values[j] - values[i]
            while j + 1 < len(values) and values[j + 1] - values[j] == step:
                j += 1
            if j - i >= 2:
                items.append(f"{values[i]}:{step}:{values[j]}")
                i = j + 1
                continue
        items.append(str(values[i]))
        i += 1
    return ",".join(items)


# --- examples --------------------------------------------------------------------------------------------------


def test_examples():
    assert parse_values("dense1", "128:64:512", int) == [128, 192, 256, 320, 384, 448, 512]
    assert parse_values("dense2", "32:32:256", int) == [32, 64, 96, 128, 160, 192, 224, 256]
    assert parse_values("lr", "1e-4,1e-3", float) == [0.0001, 0.001]
    assert parse_values("head", "gap,spp", str) == ["gap", "spp"]
    assert parse_values("x", "32:32:256,300", int) == [32, 64, 96, 128, 160, 192, 224, 256, 300]
    assert parse_values("x", "5", int) == [5]
    assert parse_values("x", " 7 ", int) == [7]
    assert parse_values("lr", "3e-4", float) == [0.0003]
    assert parse_values("x", "5:1:5", int) == [5]  # start == stop is one value
    assert parse_values("x", "-3:2:4", int) == [-3, -1, 1, 3]  # stop off the grid is not reached


def test_float_ranges_survive_rounding():
    assert parse_values("dropout", "0.1:0.1:0.5", float) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert parse_values("dropout", "0:0.1:1", float) == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert parse_values("lr", "1e-4:1e-4:5e-4", float) == [0.0001, 0.0002, 0.0003, 0.0004, 0.0005]
    assert parse_values("x", "0.3:0.1:0.7", float) == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert parse_values("x", "1:0.3:2", float) == [1.0, 1.3, 1.6, 1.9]
    assert parse_values("x", "-0.5:0.25:0.5", float) == [-0.5, -0.25, 0.0, 0.25, 0.5]


def test_duplicates_removed_keeping_first_order():
    assert parse_values("head", "spp,gap,spp,gap", str) == ["spp", "gap"]
    assert parse_values("x", "300,32:32:96,64,300", int) == [300, 32, 64, 96]
    assert parse_values("lr", "1e-4,0.0001,1e-3,0.001", float) == [0.0001, 0.001]
    assert parse_values("x", "0:2:8,0:4:8", int) == [0, 2, 4, 6, 8]


@pytest.mark.parametrize(
    "text,kind,match",
    [
        ("128:0:512", int, r"--opt: step must be positive in '128:0:512'"),
        ("128:-64:512", int, "--opt: step must be positive"),
        ("0.1:0:0.5", float, "--opt: step must be positive"),
        ("512:64:128", int, r"--opt: start is after stop in '512:64:128'"),
        ("0.5:0.1:0.1", float, "--opt: start is after stop"),
        ("abc", float, "--opt: 'abc' is not a number"),
        ("1,two", int, "--opt: 'two' is not an integer"),
        ("1.5", int, "--opt: '1.5' is not an integer"),
        ("1:x:5", int, "--opt: 'x' is not an integer"),
        ("1,,2", int, "--opt: empty item"),
        ("1,2,", int, "--opt: empty item"),
        (",", str, "--opt: empty item"),
        ("", int, "--opt: no values"),
        ("   ", str, "--opt: no values"),
        ("a:b:c", str, "--opt: ranges need numbers"),
        ("gap,1:1:3", str, "--opt: ranges need numbers"),
        ("nan", float, "--opt: 'nan' is not a finite number"),
        ("inf", float, "not a finite number"),
        ("-Infinity", float, "not a finite number"),
        ("1e999", float, "not a finite number"),
        ("0:nan:1", float, "not a finite number"),
        ("0:1:inf", float, "not a finite number"),
        ("nan", int, "not an integer"),
        ("1:2", int, "not start:step:stop"),
        ("1:2:3:4", int, "not start:step:stop"),
        ("1::3", int, "empty part in range"),
        ("0:1:100000000", int, "more than 1000000"),
        ("1:1e-12:2", float, "step is too small"),
        ("0:1e-3:1e4", float, "more than 1000000 values"),
        ("-1e308:1e300:1e308", float, "more than 1000000 values"),
    ],
)
def test_errors(text, kind, match):
    with pytest.raises(ConfigError, match=match):
        parse_values("opt", text, kind)


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(TypeError):
        parse_values("opt", "1", bool)


def test_max_cells_and_empty():
    axes = {"dense1": list(range(120)), "dense2": list(range(100))}
    assert count(axes) == 12_000
    with pytest.raises(ConfigError, match=r"^grid has 12000 cells, more than --max-cells 10000$"):
        check_max_cells(count(axes))
    check_max_cells(MAX_CELLS)
    check_max_cells(12_000, max_cells=12_000)
    with pytest.raises(ConfigError, match="more than --max-cells 5"):
        check_max_cells(6, max_cells=5)
    with pytest.raises(ConfigError, match="empty"):
        check_max_cells(count({"a": [1, 2], "b": []}))
    with pytest.raises(ConfigError, match="empty: --b has no values"):
        expand({"a": [1, 2], "b": []})


def test_expand_order():
    cells = expand({"head": ["gap", "spp"], "dense1": [128, 192], "lr": [1e-4]})
    assert cells == [
        {"head": "gap", "dense1": 128, "lr": 1e-4},
        {"head": "gap", "dense1": 192, "lr": 1e-4},
        {"head": "spp", "dense1": 128, "lr": 1e-4},
        {"head": "spp", "dense1": 192, "lr": 1e-4},
    ]
    assert expand({}) == [{}] and count({}) == 1


def test_the_resnet50_study_grid():
    axes = {"dense1": parse_values("dense1", "128:64:512", int), "dense2": parse_values("dense2", "32:32:256", int)}
    assert count(axes) == 7 * 8 == len(expand(axes))
    check_max_cells(count(axes))


# --- properties ------------------------------------------------------------------------------------------------


@given(st.integers(-1000, 1000), st.integers(1, 100), st.integers(0, 2000))
def test_int_range_properties(start, step, span):
    stop = start + span
    values = parse_values("x", f"{start}:{step}:{stop}", int)
    assert values[0] == start and all(start <= v <= stop for v in values)
    assert all(b - a == step for a, b in zip(values, values[1:]))
    assert (values[-1] == stop) == (span % step == 0)
    assert stop - values[-1] < step
    assert len(values) == span // step + 1


@given(st.integers(-(10**6), 10**6), st.integers(1, 10**4), st.integers(0, 60), st.data(), st.integers(0, 8))
def test_float_range_properties(a, j, m, data, d):
    """start = a * 10^-d, step = j * 10^-d, stop = start + m * step + r * 10^-d with 0 <= r < j (r = 0: on the grid)."""
    r = data.draw(st.integers(0, j - 1))
    unit = Decimal(1).scaleb(-d)
    start, step, stop = a * unit, j * unit, (a + m * j + r) * unit
    values = parse_values("x", f"{start}:{step}:{stop}", float)
    # Clean values: exactly the floats nearest the decimal grid points, no binary noise.
    assert values == [float((a + i * j) * unit) for i in range(m + 1)]
    assert values[0] == float(start) and all(float(start) <= v <= float(stop) for v in values)
    assert (values[-1] == float(stop)) == (r == 0)
    gaps = [b - c for c, b in zip(values, values[1:])]
    assert all(g == pytest.approx(float(step), rel=1e-9, abs=1e-12) for g in gaps)


@given(st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=30, unique=True))
def test_int_lists_round_trip(xs):
    assert parse_values("x", ",".join(map(str, xs)), int) == xs
    assert parse_values("x", format_ints(xs), int) == xs


@given(st.lists(st.integers(0, 60), min_size=1, max_size=30, unique=True).map(sorted))
def test_int_lists_round_trip_through_ranges(xs):
    # Sorted small ints have many evenly spaced runs, so format_ints writes ranges and mixes them with items.
    assert parse_values("x", format_ints(xs), int) == xs


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: float(f"{x:.6g}")), min_size=1, max_size=20))
def test_float_lists_round_trip(xs):
    assert parse_values("x", ",".join(map(repr, xs)), float) == list(dict.fromkeys(x + 0.0 for x in xs))


axes_strategy = st.dictionaries(
    st.text("abcdefgh_", min_size=1, max_size=6),
    st.lists(
        st.one_of(st.integers(-9, 9), st.sampled_from(["gap", "spp"]), st.floats(0, 1, allow_nan=False)),
        min_size=1,
        max_size=4,
        unique_by=repr,
    ),
    min_size=1,
    max_size=4,
)


@given(axes_strategy)
def test_expand_matches_count_and_is_ordered(axes):
    cells = expand(axes)
    assert len(cells) == count(axes)
    assert cells == expand(dict(axes))  # stable
    names = list(axes)
    # First axis slowest, last fastest: exactly nested loops over the values in the order given.
    assert [tuple(c[n] for n in names) for c in cells] == list(itertools.product(*axes.values()))
    assert all(list(c) == names for c in cells)


@given(st.lists(st.integers(0, 5), min_size=1, max_size=5))
def test_count_never_materialises(sizes):
    axes = {f"a{i}": list(range(s)) for i, s in enumerate(sizes)}
    assert count(axes) == len(list(itertools.product(*axes.values())))
    huge = {f"h{i}": range(1000) for i in range(4)}  # 10^12 cells: only counted
    assert count(huge) == 10**12
    with pytest.raises(ConfigError, match="more than --max-cells"):
        check_max_cells(count(huge))


def test_split_constant_keeps_what_varies_per_row_and_the_rest_once():
    from orchestrator.jobs.gridspec import split_constant

    cells = [
        {"head": "gap", "dense1": 64, "lr": 0.001, "epochs": 20},
        {"head": "spp", "dense1": 64, "lr": 0.001, "epochs": 20},
        {"head": "gap", "dense1": 128, "lr": 0.001, "epochs": 20, "dense2": 32},
    ]
    constant, varying = split_constant(cells)
    assert constant == {"lr": 0.001, "epochs": 20}
    assert varying == ["head", "dense1", "dense2"]  # dense2 is missing from two cells: it varies
    assert split_constant([]) == ({}, [])
    assert split_constant([{"lr": 1}]) == ({"lr": 1}, [])
