import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.stats import wilson_interval


@pytest.mark.parametrize("k,n,expected", [
    # Reference values: Newcombe (1998), Stat Med 17:857, Table I (method 3, Wilson score).
    (81, 263, (0.2553, 0.3662)),
    (15, 148, (0.0624, 0.1605)),
    (0, 20, (0.0, 0.1611)),
    (1, 29, (0.0061, 0.1718)),
])
def test_published_values(k, n, expected):
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == pytest.approx(expected, abs=1e-4)


def test_edge_cases():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and 0.6 < lo < 0.75
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


@given(st.integers(1, 5000), st.data())
def test_interval_properties(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 <= hi - lo + 1e-12
