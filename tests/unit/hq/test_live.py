"""LiveHub fan-out: filtering by subscription and bounded per-client queues."""

from __future__ import annotations

import asyncio

import pytest

from hq.console.websocket import SubscriptionError, parse_subscription
from hq.live import LiveHub, Subscription


def item(patient: str, kind: str = "observation", clinic: str = "c1", n: int = 0) -> dict[str, object]:
    return {"kind": kind, "patient_id": patient, "clinic_id": clinic, "metric": "M", "seq": n}


async def test_slow_client_drops_oldest_and_counts() -> None:
    hub = LiveHub(max_queued_per_client=3)
    client = hub.connect()
    for n in range(5):
        hub.publish_observations([item("P1", n=n)])
    assert client.pending() == 3
    assert hub.dropped == 2
    first = await client.next()
    assert first["items"][0]["seq"] == 2  # 0 and 1 were dropped
    hub.disconnect(client)
    assert hub.dropped == 2 and hub.clients == 0


async def test_subscription_filters_and_gateway_goes_to_all() -> None:
    hub = LiveHub()
    p1, everything = hub.connect(), hub.connect()
    p1.subscription = Subscription(patient_id="P1")
    hub.publish_observations([item("P1"), item("P2"), item("P1", kind="waveform")])
    hub.publish_gateway({"gateway_id": "gw1"})
    got = await p1.next()
    assert [i["patient_id"] for i in got["items"]] == ["P1"]
    assert (await p1.next())["type"] == "gateway"
    assert len((await everything.next())["items"]) == 2  # waveforms only on request


async def test_next_waits_for_a_message() -> None:
    hub = LiveHub()
    client = hub.connect()
    waiter = asyncio.create_task(client.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish_gateway({"gateway_id": "gw1"})
    assert (await asyncio.wait_for(waiter, 1))["gateway"] == {"gateway_id": "gw1"}


def test_parse_subscription() -> None:
    assert parse_subscription('{"subscribe": {}}') == Subscription()
    assert parse_subscription('{"subscribe": "all"}') == Subscription()
    sub = parse_subscription('{"subscribe": {"patient_id": "P1", "kinds": ["alarm"]}}')
    assert sub.patient_id == "P1" and sub.kinds == frozenset({"alarm"})
    for bad in ("nope", "[]", '{"subscribe": {"patient": "P1"}}', '{"subscribe": {"kinds": ["x"]}}',
                '{"subscribe": {"patient_id": 7}}'):
        with pytest.raises(SubscriptionError):
            parse_subscription(bad)
