"""Chaos over real processes: kill -9 the gateway, HQ and the broker during heavy ingest. Afterwards
every reading the gateway committed is at HQ exactly once, in order per device (counts asserted)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.chaos import (
    assert_exactly_once,
    heavy_clinic,
    kill_broker,
    kill_gateway_repeatedly,
    kill_hq_repeatedly,
    stop_devices_and_drain,
)
from tests.support.ports import eventually
from tests.support.stack import Stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        yield s


def test_gateway_killed_20_times_during_heavy_ingest(stack: Stack) -> None:
    spec = heavy_clinic()
    stack.start_gateway(spec)
    eventually(lambda: stack.gateway_status(spec.gateway_id)["uplink"]["records_acked"] > 100, 30, "ingest")
    kill_gateway_repeatedly(stack, spec, kills=20, run_s=1.0)
    stop_devices_and_drain(stack, spec)
    assert_exactly_once(stack, spec.gateway_id, minimum=2000)


def test_hq_killed_and_broker_killed_during_ingest(stack: Stack) -> None:
    spec = heavy_clinic()
    stack.start_gateway(spec)
    eventually(lambda: stack.gateway_status(spec.gateway_id)["uplink"]["records_acked"] > 100, 30, "ingest")
    kill_hq_repeatedly(stack, kills=3)
    kill_broker(stack, down_s=3)
    kill_hq_repeatedly(stack, kills=1)
    stop_devices_and_drain(stack, spec)
    assert_exactly_once(stack, spec.gateway_id, minimum=1000)
