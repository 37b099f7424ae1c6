"""The spine as real processes: simulated monitors on ptys -> gateway -> Mosquitto -> HQ (SQLite or
PostgreSQL). Counts are asserted, not just the absence of errors."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        yield s


def hq_rows_sqlite(stack: Stack, gateway_id: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        return conn.execute("SELECT seq, kind, device_id, time_ms FROM observations WHERE gateway_id = ? ORDER BY seq",
                            (gateway_id,)).fetchall()
    finally:
        conn.close()


def hq_rows_postgres(url: str, gateway_id: str) -> list[tuple[Any, ...]]:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT seq, kind, device_id, time_ms FROM observations WHERE gateway_id = %s "
                            "ORDER BY seq", (gateway_id,)).fetchall()


def run_offline_then_drain(stack: Stack, rows: Callable[[], list[tuple[Any, ...]]]) -> None:
    monitor = SimulatedDevice("monitor-1", "hl7", "P-0001", rate=20, seed=3)
    oximeter = SimulatedDevice("oxi-1", "masimo", "P-0002", rate=20, seed=4)
    spec = GatewaySpec("gw-t", "clinic-t", [monitor, oximeter])
    stack.start_broker()
    ports = stack.start_gateway(spec, start_simulators=False)
    time.sleep(0.7)
    stack.start_simulator("sim-mon", monitor, ports["monitor-1"], count=40)
    stack.start_simulator("sim-oxi", oximeter, ports["oxi-1"], count=40)
    for name in ("sim-mon", "sim-oxi"):
        stack.procs[name].wait(30)

    # HQ is not running: the broker acknowledges every publish, yet nothing may leave the outbox.
    status = eventually(lambda: (s := stack.gateway_status("gw-t"))["uplink"]["batches_sent"] > 0 and s,
                        what="gateway published")
    time.sleep(1.0)
    status = stack.gateway_status("gw-t")
    appended = status["outbox"]["appended_total"]
    assert appended > 40 * 3
    assert sum(b["count"] for b in status["backlog"].values()) == appended
    assert status["uplink"]["records_acked"] == 0

    stack.start_hq()
    eventually(lambda: sum(b["count"] for b in stack.gateway_status("gw-t")["backlog"].values()) == 0,
               what="outbox drained after HQ came up")
    got = rows()
    seqs = [r[0] for r in got]
    assert seqs == list(range(1, appended + 1)), "every committed reading at HQ exactly once, no holes"
    readings = [r for r in got if r[1] == "observation"]
    assert {r[2] for r in readings} == {"monitor-1", "oxi-1"}
    for device in ("monitor-1", "oxi-1"):
        times = [r[3] for r in readings if r[2] == device]
        assert times == sorted(times), f"{device} readings out of order"
    gateways = stack.hq_get("/api/v1/gateways")["gateways"]
    assert [(g["gateway_id"], g["status"], g["clinic_id"]) for g in gateways] == [("gw-t", "online", "clinic-t")]


def test_outbox_drains_only_after_hq_commits_sqlite(stack: Stack) -> None:
    run_offline_then_drain(stack, lambda: hq_rows_sqlite(stack, "gw-t"))


@pytest.mark.postgres
def test_outbox_drains_only_after_hq_commits_postgres(postgres_url: str) -> None:
    with Stack(db_url=postgres_url) as stack:
        run_offline_then_drain(stack, lambda: hq_rows_postgres(postgres_url, "gw-t"))


def test_gateway_killed_shows_offline_at_hq_and_resumes_without_loss(stack: Stack) -> None:
    monitor = SimulatedDevice("monitor-1", "hl7", "P-0001", rate=10, seed=5)
    spec = GatewaySpec("gw-k", "clinic-k", [monitor], keepalive_s=5, heartbeat_s=2)
    stack.start_broker()
    stack.start_hq()
    stack.start_gateway(spec)

    def hq_status() -> str:
        return str(stack.hq_get("/api/v1/gateways")["gateways"][0]["status"])

    eventually(lambda: stack.hq_get("/api/v1/gateways")["gateways"], what="gateway known at HQ")
    eventually(lambda: hq_status() == "online", what="online")
    time.sleep(1)
    stack.stop_process("gw-gw-k", sig=signal.SIGKILL)
    killed_at = time.monotonic()
    eventually(lambda: hq_status() == "offline", timeout_s=20, what="offline after kill -9 (last will)")
    assert time.monotonic() - killed_at < 15
    stack.restart_gateway("gw-k")
    eventually(lambda: hq_status() == "online", what="online again")
    time.sleep(2)
    stack.stop_process("sim-gw-k-monitor-1")
    eventually(lambda: sum(b["count"] for b in stack.gateway_status("gw-k")["backlog"].values()) == 0,
               what="drained")
    seqs = [r[0] for r in hq_rows_sqlite(stack, "gw-k")]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 20


def test_broker_restart_loses_nothing_and_the_uplink_returns_within_10_s(stack: Stack) -> None:
    monitor = SimulatedDevice("monitor-1", "hl7", "P-0001", rate=10, seed=9)
    spec = GatewaySpec("gw-b", "clinic-b", [monitor], heartbeat_s=1)
    stack.start_broker()
    stack.start_hq()
    stack.start_gateway(spec)
    eventually(lambda: stack.gateway_status("gw-b")["uplink"]["records_acked"] > 20, what="data flowing")
    stack.broker.stop()
    time.sleep(3)  # the monitor keeps sending: readings pile up in the outbox
    assert stack.gateway_status("gw-b")["connected"] is False
    stack.broker.start()
    back_at = time.monotonic()
    eventually(lambda: stack.gateway_status("gw-b")["connected"], timeout_s=10, what="uplink back")
    assert time.monotonic() - back_at <= 10
    acked_before = stack.gateway_status("gw-b")["uplink"]["records_acked"]
    eventually(lambda: stack.gateway_status("gw-b")["uplink"]["records_acked"] > acked_before + 20,
               timeout_s=30, what="HQ confirming again")
    stack.stop_process("sim-gw-b-monitor-1")
    eventually(lambda: sum(b["count"] for b in stack.gateway_status("gw-b")["backlog"].values()) == 0,
               timeout_s=40, what="drained")
    status = stack.gateway_status("gw-b")
    seqs = [r[0] for r in hq_rows_sqlite(stack, "gw-b")]
    assert seqs == list(range(1, status["outbox"]["next_seq"])), "every committed reading at HQ exactly once"


def test_silent_and_vanished_devices_are_alerted_at_hq_within_30_s(stack: Stack) -> None:
    monitor = SimulatedDevice("monitor-1", "hl7", "P-0001", rate=2, seed=10)
    oximeter = SimulatedDevice("oxi-1", "masimo", "P-0002", rate=2, seed=11)
    stack.start_broker()
    stack.start_hq()
    stack.start_gateway(GatewaySpec("gw-s", "clinic-s", [monitor, oximeter]))

    def device_states() -> dict[str, str]:
        gateways = stack.hq_get("/api/v1/gateways")["gateways"]
        return {d["device_id"]: d["state"] for g in gateways for d in g["devices"]} if gateways else {}

    eventually(lambda: device_states() == {"monitor-1": "ok", "oxi-1": "ok"}, what="both devices ok at HQ")
    stack.stop_process("sim-gw-s-oxi-1")  # the oximeter stops talking
    stack.stop_process("socat-gw-s-monitor-1")  # the monitor's cable is pulled: its port vanishes
    stopped_at = time.monotonic()
    eventually(lambda: device_states().get("monitor-1") == "disconnected", timeout_s=30, what="vanished port")
    eventually(lambda: device_states().get("oxi-1") == "silent", timeout_s=30, what="silent device")
    assert time.monotonic() - stopped_at <= 30
    events = stack.hq_get("/api/v1/observations?gateway_id=gw-s&kind=event&order=asc")["observations"]
    assert {(e["device_id"], e["extra"]["state"]) for e in events} >= {("monitor-1", "disconnected"),
                                                                       ("oxi-1", "silent")}


def test_monitor_alarms_reach_hq_with_their_details(stack: Stack) -> None:
    monitor = SimulatedDevice("monitor-1", "hl7", "P-0001", rate=5, seed=12, alarm_every_s=2)
    stack.start_broker()
    stack.start_hq()
    stack.start_gateway(GatewaySpec("gw-a", "clinic-a", [monitor]))

    def alarms() -> list[dict[str, Any]]:
        return list(stack.hq_get("/api/v1/observations?gateway_id=gw-a&kind=alarm&order=asc")["observations"])

    found = eventually(alarms, timeout_s=30, what="an alarm at HQ")
    first = found[0]
    assert first["patient_id"] == "P-0001" and first["device_id"] == "monitor-1"
    assert first["alarm"]["event"].startswith("MDC_EVT_")
    assert first["alarm"]["state"] in ("active", "inactive")
    assert first["metric"] in ("MDC_PULS_OXIM_SAT_O2", "MDC_ECG_HEART_RATE", "MDC_PULS_OXIM_PULS_RATE")


def test_after_an_outage_fresh_vitals_go_out_before_the_backlog(stack: Stack) -> None:
    import json
    import threading
    import zlib

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    monitor = SimulatedDevice("monitor-1", "hl7", "P-0001", rate=5, seed=13)
    spec = GatewaySpec("gw-p", "clinic-p", [monitor], live_window_s=5, heartbeat_s=1)
    stack.start_broker()
    stack.start_hq()
    seen: list[tuple[float, int, int]] = []  # (arrival, lane, rows)
    lock = threading.Lock()

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        doc = json.loads(zlib.decompress(msg.payload[1:]))
        with lock:
            seen.append((time.monotonic(), doc["lane"], len(doc["rows"])))

    # A recorder with a persistent session: it also gets what the gateway sends right after the broker returns.
    recorder = paho.Client(CallbackAPIVersion.VERSION2, client_id="recorder", protocol=MQTTProtocolVersion.MQTTv5)
    recorder.on_message = on_message
    recorder.on_connect = lambda c, *_: c.subscribe("clinic/gw-p/up/data", qos=1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    recorder.reconnect_delay_set(0.2, 1)
    if (tls := stack.observer_tls()) is not None:
        recorder.tls_set_context(tls)
    recorder.connect(stack.broker.host, stack.broker.port, clean_start=False, properties=props)
    recorder.loop_start()
    try:
        stack.start_gateway(spec)
        eventually(lambda: stack.gateway_status("gw-p")["uplink"]["records_acked"] > 20, what="data flowing")
        stack.broker.stop()
        time.sleep(12)  # monitor keeps sending; vitals older than 5 s move to the backlog lane
        lanes = stack.gateway_status("gw-p")["backlog"]
        assert lanes.get("backlog", {}).get("count", 0) > 100, lanes
        restarted = time.monotonic()
        stack.broker.start()
        eventually(lambda: stack.gateway_status("gw-p")["backlog"].get("backlog", {}).get("count", 1) == 0,
                   timeout_s=40, what="backlog drained")
    finally:
        recorder.loop_stop()
        recorder.disconnect()
    with lock:
        after = [(lane, rows) for t, lane, rows in seen if t >= restarted]
    data_lanes = [lane for lane, _ in after if lane in (2, 3)]
    assert 3 in data_lanes, after
    assert data_lanes[0] == 2, f"the first data batch after the outage should be live vitals: {after}"


def test_quota_drops_are_explicit_gaps_at_hq(stack: Stack) -> None:
    monitors = [SimulatedDevice(f"monitor-{i}", "hl7", f"P-{i:04d}", rate=40, seed=20 + i) for i in range(4)]
    spec = GatewaySpec("gw-q", "clinic-q", monitors, quota_bytes=256 * 1024, heartbeat_s=1)
    stack.start_broker()  # HQ is down: nothing is confirmed, the outbox fills up
    stack.start_gateway(spec)
    eventually(lambda: stack.gateway_status("gw-q")["outbox"]["dropped_total"] > 2000, timeout_s=60,
               what="quota reached")
    for i in range(4):
        stack.stop_process(f"sim-gw-q-monitor-{i}")
    time.sleep(1)
    stack.start_hq()
    eventually(lambda: sum(b["count"] for b in stack.gateway_status("gw-q")["backlog"].values()) == 0,
               timeout_s=60, what="drained")
    status = stack.gateway_status("gw-q")
    rows = hq_rows_sqlite(stack, "gw-q")
    observations = [r for r in rows if r[1] == "observation"]
    gaps = stack.hq_get("/api/v1/observations?gateway_id=gw-q&kind=gap&limit=10000")["observations"]
    dropped = status["outbox"]["dropped_total"]
    assert sum(g["gap"]["count"] for g in gaps) == dropped
    assert {g["device_id"] for g in gaps} <= {f"monitor-{i}" for i in range(4)}
    # Everything the gateway committed is at HQ, except exactly what the quota dropped (and said so).
    appended = status["outbox"]["appended_total"]
    assert len(rows) == appended - dropped
    assert len(observations) > 0
    patient = gaps[0]["patient_id"]
    # The patient's timeline (the HQ patient its device patient id belongs to) lists the gaps.
    assert "were dropped (outbox quota" in stack.hq_page(f"/patients/lookup?clinic_id=clinic-q&mrn={patient}")
    # The fleet page shows the gateway's gaps too, on its card.
    fleet = stack.hq_page("/")
    card = fleet[fleet.index('data-gateway="gw-q"'):]
    assert "were dropped (outbox quota" in card[:card.index('class="gaps"') + 5000]
