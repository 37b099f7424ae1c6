"""Parsing and validation of /api/v1/observations parameters."""

from __future__ import annotations

import pytest

from hq.query_params import MAX_LIMIT, ObservationQuery, Order, ParamError, parse_observation_query


def test_defaults() -> None:
    assert parse_observation_query({}) == ObservationQuery(limit=1000, order=Order.DESC)


def test_all_filters() -> None:
    q = parse_observation_query({"gateway_id": "gw1", "patient_id": "P1", "metric": "MDC_TEMP", "kind": "alarm",
                                 "since": "2025-01-01T00:00:00Z", "until": "2025-01-01T08:00:01+08:00",
                                 "limit": "10", "order": "asc"})
    assert q.since_ms == 1735689600000
    assert q.until_ms == 1735689601000
    assert (q.gateway_id, q.patient_id, q.metric, q.kind, q.limit, q.order) == (
        "gw1", "P1", "MDC_TEMP", "alarm", 10, Order.ASC)


@pytest.mark.parametrize(
    "value", ["yesterday", "1735689600", "2025-01-01", "2025-01-01T00:00:00", "", "2025-13-01T00:00Z"])
def test_since_must_be_iso_with_offset(value: str) -> None:
    with pytest.raises(ParamError) as err:
        parse_observation_query({"since": value})
    assert err.value.parameter == "since"
    body = err.value.to_json()
    assert body["parameter"] == "since" and "ISO 8601" in body["expected"]


@pytest.mark.parametrize(("params", "parameter"), [
    ({"limit": "0"}, "limit"), ({"limit": str(MAX_LIMIT + 1)}, "limit"), ({"limit": "ten"}, "limit"),
    ({"limit": "-1"}, "limit"), ({"order": "sideways"}, "order"), ({"kind": "vibes"}, "kind"),
    ({"colour": "red"}, "colour"), ({"until": "2025-01-01T00:00:00Z", "since": "2025-01-02T00:00:00Z"}, "until"),
    ({"patient_id": ""}, "patient_id"),
])
def test_errors_name_the_parameter(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(ParamError) as err:
        parse_observation_query(params)
    assert err.value.parameter == parameter
