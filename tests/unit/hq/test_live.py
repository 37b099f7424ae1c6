"""LiveHub fan-out: filtering by subscription and bounded per-client queues."""

from __future__ import annotations

import asyncio
import re

import pytest

from hq import live_bus
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
    hub.publish_gateway({"gateway_id": "gw1", "clinic_id": "c1"})
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
    hub.publish_gateway({"gateway_id": "gw1", "clinic_id": "c1"})
    assert (await asyncio.wait_for(waiter, 1))["gateway"] == {"gateway_id": "gw1", "clinic_id": "c1"}


def test_parse_subscription() -> None:
    assert parse_subscription('{"subscribe": {}}') == Subscription()
    assert parse_subscription('{"subscribe": "all"}') == Subscription()
    sub = parse_subscription('{"subscribe": {"patient_id": "P1", "kinds": ["alarm"]}}')
    assert sub.patient_id == "P1" and sub.kinds == frozenset({"alarm"})
    for bad in ("nope", "[]", '{"subscribe": {"patient": "P1"}}', '{"subscribe": {"kinds": ["x"]}}',
                '{"subscribe": {"patient_id": 7}}'):
        with pytest.raises(SubscriptionError):
            parse_subscription(bad)


async def test_clinic_staff_receive_only_their_clinic_and_experts_no_fleet_data() -> None:
    from hq.live import Audience

    hub = LiveHub()
    staff = hub.connect(Audience(user_id=1, role="clinic_staff", clinic_id="c1"))
    expert = hub.connect(Audience(user_id=2, role="expert", observations=False))
    coordinator = hub.connect(Audience(user_id=3, role="coordinator"))
    hub.publish_observations([item("P1", clinic="c1"), item("P9", clinic="c2")])
    hub.publish_gateway({"gateway_id": "gw2", "clinic_id": "c2"})
    assert [i["patient_id"] for i in (await staff.next())["items"]] == ["P1"]
    assert staff.pending() == 0 and expert.pending() == 0
    assert [i["patient_id"] for i in (await coordinator.next())["items"]] == ["P1", "P9"]
    assert (await coordinator.next())["type"] == "gateway"


async def test_notify_reaches_the_users_roles_and_clinic_it_names() -> None:
    from hq.live import Audience

    hub = LiveHub()
    alice = hub.connect(Audience(user_id=1, role="expert", observations=False))
    bob = hub.connect(Audience(user_id=2, role="expert", observations=False))
    staff_c1 = hub.connect(Audience(user_id=3, role="clinic_staff", clinic_id="c1"))
    staff_c2 = hub.connect(Audience(user_id=4, role="clinic_staff", clinic_id="c2"))
    admin = hub.connect(Audience(user_id=5, role="admin"))
    assert hub.notify({"type": "offer"}, user_ids=[1]) == 1
    assert (await alice.next()) == {"type": "offer"} and bob.pending() == 0
    assert hub.notify({"type": "booked"}, roles=["clinic_staff"], clinic_id="c1") == 2  # the staff and the admin
    assert staff_c1.pending() == 1 and staff_c2.pending() == 0 and admin.pending() == 1
    assert [c.audience.user_id for c in hub.disconnect_user(2)] == [2]


# ---- between workers (hq.live_bus) ------------------------------------------------------------
def test_a_hub_forwards_what_it_publishes_and_delivers_without_forwarding_again() -> None:
    sent: list[tuple[str, dict[str, object]]] = []
    hub = LiveHub()
    hub.forward = lambda op, body: sent.append((op, body))
    client = hub.connect()
    hub.publish_observations([item("P1")])
    hub.publish_gateway({"gateway_id": "gw-1", "clinic_id": "c1"})
    hub.notify({"type": "x"}, user_ids=iter([7]), roles=None)
    assert [op for op, _ in sent] == ["observations", "gateway", "notify"]
    assert sent[2][1] == {"message": {"type": "x"}, "user_ids": [7], "roles": None, "clinic_id": None}
    assert client.pending() == 2  # the notice was for user 7, not this anonymous client
    for op, body in sent:
        hub.deliver(op, body)
    assert len(sent) == 3, "delivered messages are not forwarded again"
    assert client.pending() == 4


def test_live_messages_round_trip_and_bad_ones_are_named() -> None:
    payload = live_bus.encode("hq-a", "notify", {"message": {"type": "x"}, "roles": ("expert",)})
    assert live_bus.decode(payload) == ("hq-a", "notify", {"message": {"type": "x"}, "roles": ["expert"]})
    for bad, message in ((b"\xff", "not JSON"), (b"[]", "v=1"), (b'{"v": 2}', "v=1"),
                         (b'{"v": 1, "origin": "a", "op": "drop", "body": {}}', "op (one of")):
        with pytest.raises(live_bus.BusError, match=re.escape(message)):
            live_bus.decode(bad)
