"""Prometheus text exposition written by hand."""

from __future__ import annotations

import pytest

from gateway.prometheus import Family, Histogram, render


def test_counter_gauge_and_labels() -> None:
    text = render([
        Family.single("hq_readings_total", "counter", "Readings stored", 12),
        Family("hq_lanes", "gauge", "Per lane", {(("lane", 'a"b\\c'),): 1.5}),
    ])
    assert text == (
        "# HELP hq_readings_total Readings stored\n# TYPE hq_readings_total counter\nhq_readings_total 12\n"
        '# HELP hq_lanes Per lane\n# TYPE hq_lanes gauge\nhq_lanes{lane="a\\"b\\\\c"} 1.5\n'
    )


def test_histogram_buckets_are_cumulative_with_inf() -> None:
    h = Histogram([10, 100])
    for v in (5, 10, 50, 1000):
        h.observe(v)
    text = render([Family("lag_ms", "histogram", "Lag", histogram=h)])
    assert 'lag_ms_bucket{le="10"} 2\n' in text
    assert 'lag_ms_bucket{le="100"} 3\n' in text
    assert 'lag_ms_bucket{le="+Inf"} 4\n' in text
    assert "lag_ms_sum 1065\nlag_ms_count 4\n" in text


def test_histogram_bounds_must_increase() -> None:
    with pytest.raises(ValueError):
        Histogram([5, 1])
