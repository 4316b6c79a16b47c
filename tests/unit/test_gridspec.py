import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.gridspec import check_max_cells, count, expand, parse_values
from worker.ml.errors import ConfigError


def test_examples():
    assert parse_values("dense1", "128:64:512", int) == [128, 192, 256, 320, 384, 448, 512]
    assert parse_values("dense2", "32:32:256", int) == [32, 64, 96, 128, 160, 192, 224, 256]
    assert parse_values("lr", "1e-4,1e-3", float) == [1e-4, 1e-3]
    assert parse_values("lr", "0.1:0.1:0.5", float) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert parse_values("head", "gap,spp,gap", str) == ["gap", "spp"]
    assert parse_values("x", "32:32:96,300,64", int) == [32, 64, 96, 300]
    assert parse_values("x", "5", int) == [5]


@pytest.mark.parametrize("text,kind,match", [
    ("128:0:512", int, "step must be positive"),
    ("128:-64:512", int, "step must be positive"),
    ("512:64:128", int, "start is after stop"),
    ("abc", float, "not a number"),
    ("1.5", int, "not an integer"),
    ("1,,2", int, "empty item"),
    ("", int, "no values"),
    ("a:b:c", str, "ranges need numbers"),
    ("nan", float, "finite"),
    ("1:2", int, "start:step:stop"),
])
def test_errors(text, kind, match):
    with pytest.raises(ConfigError, match=match):
        parse_values("opt", text, kind)


def test_max_cells_and_empty():
    axes = {"a": list(range(120)), "b": list(range(100))}
    with pytest.raises(ConfigError, match="12000 cells, more than --max-cells 10000"):
        check_max_cells(count(axes))
    with pytest.raises(ConfigError, match="empty"):
        check_max_cells(count({"a": []}))


@given(st.integers(-1000, 1000), st.integers(1, 100), st.integers(0, 2000))
def test_int_range_properties(start, step, span):
    stop = start + span
    values = parse_values("x", f"{start}:{step}:{stop}", int)
    assert values[0] == start and all(start <= v <= stop for v in values)
    assert all(b - a == step for a, b in zip(values, values[1:]))
    assert (values[-1] == stop) == (span % step == 0)
    assert stop - values[-1] < step


@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=20, unique=True))
def test_int_lists_round_trip(xs):
    assert parse_values("x", ",".join(map(str, xs)), int) == xs


@given(st.dictionaries(st.sampled_from("abcd"), st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True),
                       min_size=1))
def test_expand_matches_count_and_is_ordered(axes):
    cells = expand(axes)
    assert len(cells) == count(axes)
    assert cells == expand(axes)
    assert len({tuple(sorted(c.items())) for c in cells}) == len(cells)
    first = list(axes)[0]
    assert [c[first] for c in cells] == sorted([c[first] for c in cells], key=axes[first].index)
