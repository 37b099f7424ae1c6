"""Notices from HQ to a clinic's gateway, over real processes: queued in HQ's database, published while the
gateway is online, stored once by the gateway however often they arrive, and confirmed by a receipt that
travels back through the gateway's outbox."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from gateway import wire
from hq import db, downlink
from hq.models import downlink_messages
from tests.support.chaos import gateway_metrics
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, Stack

GW = "gw-notices"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        yield s


def queue(stack: Stack, kind: str, body: dict[str, Any]) -> int:
    engine = db.create_engine_for(stack.db_url)
    try:
        with engine.begin() as conn:
            return downlink.send(conn, GW, kind, body)
    finally:
        engine.dispose()


def message(stack: Stack, notice_id: int) -> dict[str, Any]:
    engine = db.create_engine_for(stack.db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.select(downlink_messages).where(downlink_messages.c.id == notice_id))
                        .mappings().one())
    finally:
        engine.dispose()


def gateway_notices(stack: Stack) -> list[dict[str, Any]]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.gateway_http_ports[GW]}/api/v1/notices", timeout=5) as r:
        return list(json.load(r)["notices"])


def test_a_notice_reaches_the_gateway_once_and_its_receipt_comes_back(stack: Stack) -> None:
    spec = GatewaySpec(GW, "clinic-n", [], heartbeat_s=1)
    stack.start_gateway(spec)
    eventually(lambda: stack.hq_get("/api/v1/gateways")["gateways"], what="gateway known at HQ")
    notice_id = queue(stack, "booking_confirmed", {"appointment": 7, "start": "2026-12-02T09:00:00Z"})
    eventually(lambda: message(stack, notice_id)["delivered_ms"] is not None, 20, "receipt at HQ")
    stored = gateway_notices(stack)
    assert [(n["id"], n["kind"], n["body"]["appointment"], n["outcome"]) for n in stored] == [
        (notice_id, "booking_confirmed", 7, "stored")]
    assert message(stack, notice_id)["outcome"] == "stored"

    # The same notice again (HQ's retry racing the receipt): stored once, confirmed again.
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="hq-retry", protocol=MQTTProtocolVersion.MQTTv5)
    if (tls := stack.observer_tls()) is not None:  # an identity with HQ's access to the clinics' topics
        client.tls_set_context(tls)
    client.connect(stack.broker.host, stack.broker.port)
    client.loop_start()
    try:
        payload = wire.encode_notice(wire.Notice(notice_id, "booking_confirmed", {"appointment": 7}, 1))
        client.publish(wire.notice_topic(GW), payload, qos=1).wait_for_publish(5)
        eventually(lambda: gateway_metrics(stack, GW).get("gateway_inbox_received_total") == 1.0
                   and len(gateway_notices(stack)) == 1, 10, "duplicate ignored")
    finally:
        client.loop_stop()
        client.disconnect()
    time.sleep(1)
    assert len(gateway_notices(stack)) == 1


def test_a_notice_to_an_offline_gateway_waits_and_arrives_when_it_returns(stack: Stack) -> None:
    spec = GatewaySpec(GW, "clinic-n", [], heartbeat_s=1)
    stack.start_gateway(spec)
    eventually(lambda: stack.hq_get("/api/v1/gateways")["gateways"], what="gateway known at HQ")
    stack.stop_process(f"gw-{GW}")
    eventually(lambda: stack.hq_get("/api/v1/gateways")["gateways"][0]["status"] == "offline", 20, "offline")
    notice_id = queue(stack, "reminder", {"text": "Consultation with Dr. Li at 09:00"})
    time.sleep(5)  # several publishing rounds
    assert message(stack, notice_id)["attempts"] == 0, "published to a gateway that is offline"
    stack.restart_gateway(GW)
    eventually(lambda: message(stack, notice_id)["delivered_ms"] is not None, 20, "receipt after the return")
    assert [n["body"]["text"] for n in gateway_notices(stack)] == ["Consultation with Dr. Li at 09:00"]
