"""Status messages and batches mapped to gateway row updates; silence detection."""

from __future__ import annotations

from gateway import wire
from gateway.wire import GatewayState, Lane, LaneBacklog
from hq.fleet import GatewayUpdate, is_silent, update_from_status


def status(state: GatewayState = GatewayState.ONLINE, time_ms: int = 10_000) -> wire.Status:
    return wire.Status(state, "c1", time_ms, "gw 1.2", 5_000,
                       {Lane.ALARM: LaneBacklog(0, None), Lane.VITALS: LaneBacklog(40, 9_000)},
                       [wire.DeviceStatus("ox1", "masimo", "/dev/ttyUSB0", "ok", 9_900)])


def test_live_birth_is_contact_now_with_backlog_and_devices() -> None:
    u = update_from_status("gw1", status(), retained=False, hq_ms=12_000, offline_after_ms=60_000)
    assert u.state is GatewayState.ONLINE
    assert u.contact_ms == 12_000
    assert u.software == "gw 1.2" and u.started_ms == 5_000
    assert u.backlog == {"alarm": [0, None], "vitals": [40, 9_000]}
    assert u.backlog_total == 40
    assert u.devices == [{"device_id": "ox1", "protocol": "masimo", "source": "/dev/ttyUSB0", "state": "ok",
                          "last_ms": 9_900}]


def test_stale_retained_online_status_means_offline() -> None:
    u = update_from_status("gw1", status(time_ms=10_000), retained=True, hq_ms=200_000, offline_after_ms=60_000)
    assert u.state is GatewayState.OFFLINE
    assert u.contact_ms == 10_000


def test_fresh_retained_online_status_stays_online() -> None:
    u = update_from_status("gw1", status(time_ms=190_000), retained=True, hq_ms=200_000, offline_after_ms=60_000)
    assert u.state is GatewayState.ONLINE


def test_last_will_changes_only_the_state() -> None:
    will = wire.Status(GatewayState.OFFLINE, "c1", 0, "gw 1.2")
    u = update_from_status("gw1", will, retained=False, hq_ms=50_000, offline_after_ms=60_000)
    assert u == GatewayUpdate("gw1", "c1", state=GatewayState.OFFLINE, software="gw 1.2")


def test_graceful_offline_status_keeps_backlog() -> None:
    u = update_from_status("gw1", status(GatewayState.OFFLINE), retained=False, hq_ms=11_000, offline_after_ms=1)
    assert u.state is GatewayState.OFFLINE and u.backlog_total == 40 and u.contact_ms == 11_000


def test_merged_keeps_max_contact_and_seq() -> None:
    a = GatewayUpdate("gw1", "c1", state=GatewayState.ONLINE, contact_ms=5, committed_seq=9, complete_below=7)
    b = GatewayUpdate("gw1", "c1", state=GatewayState.OFFLINE, contact_ms=3, committed_seq=4, complete_below=2)
    m = a.merged(b)
    assert (m.state, m.contact_ms, m.committed_seq, m.complete_below) == (GatewayState.OFFLINE, 5, 9, 7)


def test_silence() -> None:
    assert is_silent("online", 1_000, now_ms=70_000, offline_after_ms=60_000)
    assert not is_silent("online", 20_000, now_ms=70_000, offline_after_ms=60_000)
    assert not is_silent("offline", 1_000, now_ms=70_000, offline_after_ms=60_000)
    assert is_silent("online", None, now_ms=70_000, offline_after_ms=60_000)
