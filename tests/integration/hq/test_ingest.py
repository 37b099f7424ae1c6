"""Ingest end to end over a real broker and database: idempotent commits, acks, fleet state, rejects."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import zlib

from gateway import wire
from hq.appkeys import INGEST
from tests.integration.hq.conftest import FakeGateway, eventually, hq_config, running_hq
from tests.support.mosquitto import Mosquitto


async def test_batch_published_twice_is_stored_once_and_acked_both_times(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq, FakeGateway(broker) as gw:
        batch = gw.batch(range(1, 11))
        await gw.send(batch)
        first = await gw.next_ack()
        await gw.send(batch)  # a QoS 1 redelivery / replay after reconnect
        second = await gw.next_ack()
        for ack in (first, second):
            assert ack.ranges == [(wire.Lane.VITALS, 1, 10)]
            assert ack.committed_seq == 10
        rows = (await hq.get_json("/api/v1/observations?gateway_id=gw-1"))["observations"]
        assert sorted(r["seq"] for r in rows) == list(range(1, 11))
        gateways = (await hq.get_json("/api/v1/gateways"))["gateways"]
        assert [(g["gateway_id"], g["clinic_id"], g["committed_seq"], g["status"]) for g in gateways] == [
            ("gw-1", "clinic-a", 10, "online")]
        stats = hq.app[INGEST].stats
        assert (stats.readings, stats.duplicates) == (10, 10)


async def test_acks_carry_every_lane_and_the_highest_committed_seq(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as _hq, FakeGateway(broker) as gw:
        await gw.send(gw.batch([5, 6], lane=wire.Lane.BACKLOG))
        await gw.send(gw.batch([7], lane=wire.Lane.ALARM, kind="alarm",
                               extra={"alarm": {"event": "MDC_EVT_LO", "priority": "high"}}))
        ranges: set[tuple[wire.Lane, int, int]] = set()
        committed = 0
        while len(ranges) < 2:
            ack = await gw.next_ack()
            ranges.update(ack.ranges)
            committed = max(committed, ack.committed_seq)
        assert ranges == {(wire.Lane.BACKLOG, 5, 6), (wire.Lane.ALARM, 7, 7)}
        assert committed == 7


async def test_malformed_batches_are_rejected_and_counted_later_batches_still_ingested(
    broker: Mosquitto, sqlite_url: str
) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq, FakeGateway(broker) as gw:
        await gw.send_raw(b"\x01not zlib")
        await gw.send_raw(b"\x01" + zlib.compress(json.dumps({"gw": "gw-1", "clinic": "c", "lane": 2,
                                                               "sent_ms": 1, "rows": [[1, "bogus"]]}).encode()))
        spoofed = gw.batch([1, 2])
        await gw.send_raw(wire.encode_batch(wire.Batch("gw-other", "c", wire.Lane.VITALS, 1, spoofed.records)))
        await gw.send(gw.batch([3, 4]))
        ack = await gw.next_ack()
        assert ack.ranges == [(wire.Lane.VITALS, 3, 4)]
        assert hq.app[INGEST].stats.rejected == 3
        metrics = await (await hq.http.get(hq.url + "/metrics")).text()
        assert "hq_ingest_rejected_total 3" in metrics
        assert len((await hq.get_json("/api/v1/observations"))["observations"]) == 2


async def test_gateway_online_after_birth_offline_after_its_last_will(broker: Mosquitto, sqlite_url: str) -> None:
    will = wire.encode_status(wire.Status(wire.GatewayState.OFFLINE, "clinic-a", 0, "gw 2.0")).decode()
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        # mosquitto_sub stands in for a gateway process; SIGKILL closes its socket without DISCONNECT.
        proc = subprocess.Popen(
            ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-i", "gw-7", "-t", "clinic/gw-7/down/ack",
             "-V", "mqttv5", "--will-topic", wire.status_topic("gw-7"), "--will-payload", will,
             "--will-qos", "1", "--will-retain"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # The birth comes from a second connection, so killing mosquitto_sub fires the will.
            async with FakeGateway(broker, "gw-7", client_id="gw-7-birth") as gw:
                await gw.send_status(backlog={wire.Lane.VITALS: wire.LaneBacklog(12, 1000)},
                                     devices=[wire.DeviceStatus("ox-1", "masimo", "/dev/ttyUSB0", "ok", 5)])

                async def online() -> bool:
                    gws = (await hq.get_json("/api/v1/gateways"))["gateways"]
                    return bool(gws) and gws[0]["status"] == "online"

                await eventually(online, what="gateway online")
                g = (await hq.get_json("/api/v1/gateways"))["gateways"][0]
                assert g["backlog"] == 12 and g["backlog_by_lane"]["vitals"]["count"] == 12
                assert g["devices"][0]["device_id"] == "ox-1" and g["last_contact"].endswith("Z")
                await asyncio.sleep(0.3)
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)

                async def offline() -> bool:
                    return (await hq.get_json("/api/v1/gateways"))["gateways"][0]["status"] == "offline"

                await eventually(offline, what="gateway offline after the will")
                g = (await hq.get_json("/api/v1/gateways"))["gateways"][0]
                assert g["backlog"] == 12  # a will does not erase what the gateway still holds
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


async def test_silent_gateway_goes_offline_without_a_will(broker: Mosquitto, sqlite_url: str) -> None:
    config = hq_config(broker, sqlite_url, "[ingest]\noffline_after_s = 1.0\nsweep_interval_s = 0.2\n")
    async with running_hq(config) as hq, FakeGateway(broker) as gw:
        await gw.send(gw.batch([1]))
        await gw.next_ack()
        assert (await hq.get_json("/api/v1/gateways"))["gateways"][0]["status"] == "online"

        async def offline() -> bool:
            return (await hq.get_json("/api/v1/gateways"))["gateways"][0]["status"] == "offline"

        await eventually(offline, timeout_s=5, what="silent gateway marked offline")


async def test_retained_status_seen_at_hq_start_is_applied(broker: Mosquitto, sqlite_url: str) -> None:
    async with FakeGateway(broker, "gw-early") as gw:
        await gw.send_status()
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        async def known() -> bool:
            return bool((await hq.get_json("/api/v1/gateways"))["gateways"])

        await eventually(known, what="retained status applied")
        assert (await hq.get_json("/api/v1/gateways"))["gateways"][0]["status"] == "online"


async def test_malformed_status_is_rejected_not_fatal(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq, FakeGateway(broker) as gw:
        bad = b'{"v":1,"state":"online","clinic":"c","time_ms":1,"backlog":{"vitals":["x",null]}}'
        await gw.link.publish(wire.status_topic("gw-1"), bad, qos=1)
        await gw.send(gw.batch([1]))
        await gw.next_ack()
        assert hq.app[INGEST].stats.rejected == 1
