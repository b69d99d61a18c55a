"""Chart ticks and charts on hostile values: every call ends, nothing overflows."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pollinate.dashboard._charts import Series, line_chart, nice_ticks

_FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def test_ticks_of_values_one_ulp_apart_end() -> None:
    """1e16 and 1e16+2 once gave a step that adding left the value unchanged: a loop forever."""
    ticks = nice_ticks(1e16, 1e16 + 2)
    assert 1 <= len(ticks) <= 21
    assert nice_ticks(1e200, math.nextafter(1e200, math.inf)) == [1e200]


def test_ticks_of_the_widest_range_are_finite() -> None:
    ticks = nice_ticks(-1.7e308, 1.7e308)
    assert 1 <= len(ticks) <= 21 and all(math.isfinite(t) for t in ticks)


def test_round_ticks_of_an_ordinary_range() -> None:
    assert nice_ticks(0, 1) == [0.0, 0.25, 0.5, 0.75, 1.0]


@settings(max_examples=300, deadline=None)
@given(_FLOATS, _FLOATS)
def test_ticks_are_few_finite_and_ordered(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert 1 <= len(ticks) <= 21
    assert all(math.isfinite(t) for t in ticks) and ticks == sorted(ticks)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5))
def test_a_chart_of_any_finite_values_is_drawn(ys: list[float]) -> None:
    points = tuple((float(i), y) for i, y in enumerate(ys))
    assert line_chart("loss", [Series("train", points)], "round").startswith("<figure")
