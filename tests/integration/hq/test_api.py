"""The JSON API, /healthz, /metrics and the /ws WebSocket against a real broker and database."""

from __future__ import annotations

import json

from tests.integration.hq.conftest import FakeGateway, RunningHq, hq_config, running_hq
from tests.support.mosquitto import Mosquitto

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


async def seed(gw: FakeGateway) -> None:
    await gw.send(gw.batch(range(1, 6), patient_id="P1", metric="MDC_PULS_OXIM_SAT_O2", value=96, time_ms=T0))
    await gw.send(gw.batch(range(6, 9), patient_id="P1", metric="MDC_PULS_OXIM_PULS_RATE", value=72,
                           time_ms=T0 + 60_000))
    await gw.send(gw.batch(range(9, 11), patient_id="P2", metric="MDC_PULS_OXIM_SAT_O2", value=91,
                           time_ms=T0 + 120_000))
    seen: set[int] = set()
    while len(seen) < 10:
        for _lane, a, b in (await gw.next_ack()).ranges:
            seen.update(range(a, b + 1))


async def observations(hq: RunningHq, query: str) -> list[dict[str, object]]:
    return list((await hq.get_json("/api/v1/observations?" + query))["observations"])


async def test_observation_filters_and_order(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq, FakeGateway(broker) as gw:
        await seed(gw)
        assert len(await observations(hq, "gateway_id=gw-1")) == 10
        assert await observations(hq, "gateway_id=nope") == []
        p1 = await observations(hq, "patient_id=P1")
        assert len(p1) == 8 and [o["seq"] for o in p1][:2] == [8, 7]  # newest first by default
        asc = await observations(hq, "patient_id=P1&order=asc&limit=2")
        assert [o["seq"] for o in asc] == [1, 2]
        assert len(await observations(hq, "metric=MDC_PULS_OXIM_SAT_O2")) == 7
        since = await observations(hq, "since=2025-01-01T00:01:00Z")
        assert sorted(o["seq"] for o in since) == [6, 7, 8, 9, 10]
        window = await observations(hq, "since=2025-01-01T08:01:00%2B08:00&until=2025-01-01T00:02:00Z")
        assert sorted(o["seq"] for o in window) == [6, 7, 8]
        one = (await observations(hq, "patient_id=P2&limit=1"))[0]
        assert one == {**one, "kind": "observation", "metric": "MDC_PULS_OXIM_SAT_O2", "value": 91.0, "unit": "%",
                       "time": "2025-01-01T00:02:00.001Z", "patient_id": "P2", "device_id": "ox-1",
                       "clinic_id": "clinic-a", "gateway_id": "gw-1", "seq": 10}
        vitals = (await hq.get_json("/api/v1/patients/P1/vitals"))["vitals"]
        assert {v["metric"]: v["seq"] for v in vitals} == {"MDC_PULS_OXIM_SAT_O2": 5, "MDC_PULS_OXIM_PULS_RATE": 8}
        clinics = (await hq.get_json("/api/v1/clinics"))["clinics"]
        assert clinics == [{"clinic_id": "clinic-a", "name": "clinic-a", "gateways": 1, "gateways_online": 1}]


async def test_bad_parameters_are_400_naming_the_parameter(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        for query, parameter in (("since=yesterday", "since"), ("since=1735689600", "since"),
                                 ("until=2025-01-01", "until"), ("limit=100000", "limit"), ("order=up", "order"),
                                 ("bogus=1", "bogus")):
            body = await hq.get_json("/api/v1/observations?" + query, status=400)
            assert body["parameter"] == parameter and body["error"] and body["expected"], body


async def test_openapi_describes_every_api_route(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        doc = await hq.get_json("/api/v1/openapi.json")
        assert doc["openapi"].startswith("3.1")
        routes = {r.resource.canonical for r in hq.app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith("/api/v1")}
        assert routes == set(doc["paths"])


async def test_healthz_follows_the_broker_and_metrics_are_prometheus_text(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq, FakeGateway(broker) as gw:
        assert await hq.get_json("/healthz") == {"status": "ok"}
        await gw.send(gw.batch(range(1, 4)))
        await gw.next_ack()
        async with hq.http.get(hq.url + "/metrics") as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
        for line in ("hq_ingest_readings_total 3", "hq_ingest_batches_total 1", "hq_mqtt_connected 1",
                     "hq_gateways_online 1", "hq_ingest_queue_depth 0", 'hq_ingest_lag_ms_bucket{le="+Inf"} 3',
                     "hq_websocket_clients 0", "hq_live_dropped_total 0", "hq_ingest_duplicates_total 0"):
            assert line in text.splitlines(), line
        broker.stop()
        body = await _eventually_unhealthy(hq)
        assert body["status"] == "unhealthy" and "mqtt broker not connected" in body["reasons"]
        broker.start()


async def _eventually_unhealthy(hq: RunningHq) -> dict[str, object]:
    import asyncio

    for _ in range(200):
        async with hq.http.get(hq.url + "/healthz") as resp:
            if resp.status == 503:
                return dict(await resp.json())
        await asyncio.sleep(0.05)
    raise AssertionError("/healthz never reported the broker down")


async def test_websocket_pushes_subscribed_patients_observations(broker: Mosquitto, sqlite_url: str) -> None:
    async with (
        running_hq(hq_config(broker, sqlite_url)) as hq,
        FakeGateway(broker) as gw,
        hq.http.ws_connect(hq.url + "/ws") as ws,
    ):
        await ws.send_str(json.dumps({"subscribe": {"patient_id": "P2"}}))
        assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        await ws.send_str("not json")
        assert (await ws.receive_json(timeout=5))["type"] == "error"
        await gw.send(gw.batch([1], patient_id="P1"))
        await gw.send(gw.batch([2], patient_id="P2", value=88))
        items: list[dict[str, object]] = []
        while not items:
            msg = await ws.receive_json(timeout=5)
            if msg["type"] == "observations":
                items = msg["items"]
            else:
                assert msg["type"] == "gateway" and msg["gateway"]["gateway_id"] == "gw-1"
        assert [(i["patient_id"], i["value"], i["seq"]) for i in items] == [("P2", 88.0, 2)]
        metrics = await (await hq.http.get(hq.url + "/metrics")).text()
        assert "hq_websocket_clients 1" in metrics
