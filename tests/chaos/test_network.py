"""Chaos on the WAN and the gateway's own machine, over real processes: the link between gateway and broker
cut for minutes (a blackhole) or flapping, the outbox quota filled by an outage, the gateway's clock jumped.
Afterwards every entry the gateway committed is at HQ exactly once, in order per device, and gaps are only
where the quota forced them (counts asserted).

The network is a userspace TCP proxy (tests/support/netproxy.py): this machine has no sch_netem for tc.
"""

from __future__ import annotations

import glob
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.chaos import (
    Audit,
    assert_exactly_once,
    audit,
    backlog,
    gateway_metrics,
    heavy_clinic,
    hq_count,
    rejected_frames,
    stop_devices_and_drain,
)
from tests.support.netproxy import CutMode, Direction, NetProxy
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

CUT_S = 120.0
RECONNECT_BOUND_S = 10.0  # ARCHITECTURE: the uplink is back within 10 s of the broker returning
BACKLOG_BEHIND_LIVE_S = 60.0  # half the outage: the backlog must drain faster than the outage built it


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        yield s


def status(stack: Stack, spec: GatewaySpec) -> dict[str, object]:
    return stack.gateway_status(spec.gateway_id)


def connected(stack: Stack, spec: GatewaySpec) -> bool:
    return bool(status(stack, spec)["connected"])


def acked(stack: Stack, spec: GatewaySpec) -> int:
    uplink = status(stack, spec)["uplink"]
    assert isinstance(uplink, dict)
    return int(uplink["records_acked"])


def outbox_counter(stack: Stack, spec: GatewaySpec, name: str) -> int:
    outbox = status(stack, spec)["outbox"]
    assert isinstance(outbox, dict)
    return int(outbox[name])


def appended(stack: Stack, spec: GatewaySpec) -> int:
    return outbox_counter(stack, spec, "appended_total")


def lane(stack: Stack, spec: GatewaySpec, name: str) -> int:
    lanes = status(stack, spec)["backlog"]
    assert isinstance(lanes, dict)
    return int(lanes[name]["count"])


def seconds_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    eventually(predicate, timeout_s, what)
    return time.monotonic() - started


@pytest.mark.timeout(480)
def test_two_minute_blackhole_between_gateway_and_broker(stack: Stack) -> None:
    proxy = stack.broker_proxy(delay_up_ms=10, delay_down_ms=10)
    spec = heavy_clinic()
    spec.broker_via = proxy
    stack.start_gateway(spec)
    eventually(lambda: acked(stack, spec) > 100, 30, "ingest before the cut")

    proxy.cut(CutMode.BLACKHOLE)
    cut_at = time.monotonic()
    appended_at_cut = appended(stack, spec)
    # Nothing is reset: the gateway can only find out through the MQTT keep-alive (PINGREQ unanswered).
    noticed_s = seconds_until(lambda: not connected(stack, spec), 3 * spec.keepalive_s, "gateway noticed the cut")
    time.sleep(2)  # what was already past the proxy reaches HQ; from now on nothing can
    at_hq_during_cut = hq_count(stack, spec.gateway_id)
    time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
    assert hq_count(stack, spec.gateway_id) == at_hq_during_cut, "data crossed a blackholed link"
    assert not connected(stack, spec)
    built_up = appended(stack, spec) - appended_at_cut
    waiting = backlog(stack, spec.gateway_id)
    # Counted before the link returns: once it is back, the backlog can drain faster than it is sampled.
    demoted = lane(stack, spec, "backlog")
    demoted_total = outbox_counter(stack, spec, "demoted_total")
    up_during_cut = proxy.counters.bytes_up

    proxy.restore()
    back_s = seconds_until(lambda: connected(stack, spec), 30, "uplink back after the cut")
    # Fresh data first: the live lane catches up at once ...
    live_s = seconds_until(lambda: lane(stack, spec, "vitals") < 1000, 60, "live vitals caught up")
    # ... and the vitals the outage pushed out of the live window drain behind it, while the monitors go on.
    behind_live_s = seconds_until(lambda: lane(stack, spec, "backlog") == 0, BACKLOG_BEHIND_LIVE_S,
                                  "backlog lane drained behind live traffic")
    stop_devices_and_drain(stack, spec)
    result = assert_exactly_once(stack, spec.gateway_id, minimum=built_up)
    print(f"\nblackhole {CUT_S:.0f} s: noticed after {noticed_s:.1f} s, {built_up} entries built up "
          f"({waiting} waiting, {demoted} of them moved to the backlog lane), uplink back {back_s:.1f} s after "
          f"restore, live lane caught up {live_s:.1f} s later, backlog lane drained {behind_live_s:.1f} s after "
          f"that; {result}; proxy {proxy.counters}")

    assert spec.keepalive_s - 1 <= noticed_s <= 2 * spec.keepalive_s + 3, noticed_s
    assert built_up > 20_000, "heavy ingest went on during the cut"  # 4 monitors x 20 msg/s x 2 min
    assert waiting >= built_up, (waiting, built_up)  # nothing written during the cut left the outbox
    # A 2-minute outage outlasts the 60 s live window: about half of what built up became backlog.
    assert built_up // 4 < demoted <= demoted_total, (demoted, demoted_total, built_up)
    assert back_s <= RECONNECT_BOUND_S, back_s
    assert proxy.counters.bytes_up > up_during_cut
    assert result.dropped == 0
    assert result.at_hq == result.committed
    assert rejected_frames(stack, spec.gateway_id) == 0


@pytest.mark.timeout(240)
def test_flapping_link_with_delay_and_stalls(stack: Stack) -> None:
    proxy = stack.broker_proxy(delay_up_ms=40, delay_down_ms=40, loss=0.02, rto_ms=300, seed=5)
    spec = heavy_clinic()
    spec.broker_via = proxy
    stack.start_gateway(spec)
    eventually(lambda: acked(stack, spec) > 100, 30, "ingest before flapping")
    flaps = 6
    for i in range(flaps):
        time.sleep(3.0)
        # Each flap must find a live connection to reset: on a loaded machine the reconnect (with its
        # backoff jitter) can take longer than the 3 s between flaps, and is bounded by the 10 s target.
        eventually(lambda: connected(stack, spec), RECONNECT_BOUND_S, f"uplink back before flap {i + 1}")
        proxy.cut(CutMode.RESET)
        time.sleep(1.0 + i % 3)  # 1-3 s outages, every connection reset and reconnects refused
        proxy.restore()
    time.sleep(3.0)
    back_s = seconds_until(lambda: connected(stack, spec), 15, "uplink back after the last flap")
    stop_devices_and_drain(stack, spec)
    result = assert_exactly_once(stack, spec.gateway_id, minimum=5000)
    reconnects = gateway_metrics(stack, spec.gateway_id)["gateway_mqtt_reconnects_total"]
    print(f"\nflapping: {result}; {reconnects:.0f} connections; back {back_s:.1f} s after the last flap; "
          f"proxy {proxy.counters}")
    assert proxy.counters.connections_reset >= flaps
    assert reconnects >= flaps + 1
    assert proxy.counters.stalls > 0
    assert result.dropped == 0
    assert rejected_frames(stack, spec.gateway_id) == 0


@dataclass
class QuotaAccount:
    """What HQ holds for a gateway after an outage that filled its quota, against what the gateway says."""

    result: Audit
    missing: set[int]  # seqs the gateway committed that HQ does not have
    covered: set[int]  # seqs inside some gap record's first_seq..last_seq that HQ does not have
    gaps: list[tuple[str, dict[str, Any]]]  # (device_id, extra) of each gap record
    stored: dict[str, int]  # per device: readings (observations, alarms, waveforms) at HQ
    alarms: dict[str, int]
    claimed_but_present: dict[str, int]  # per device: readings at HQ inside that device's own gap ranges

    @property
    def gap_total(self) -> int:
        return sum(int(g["count"]) for _, g in self.gaps)


def quota_account(stack: Stack, gateway_id: str) -> QuotaAccount:
    result = audit(stack, gateway_id)
    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        rows = [(int(seq), kind, device, extra) for seq, kind, device, extra in conn.execute(
            "SELECT seq, kind, device_id, extra FROM observations WHERE gateway_id = ?", (gateway_id,))]
    finally:
        conn.close()
    seqs = [r[0] for r in rows]
    assert len(seqs) == len(set(seqs)), "a seq stored twice at HQ"
    at_hq = set(seqs)
    gaps = [(device, json.loads(extra)) for _, kind, device, extra in rows if kind == "gap" and extra is not None]
    ranges: dict[str, list[range]] = {}
    for device, g in gaps:
        ranges.setdefault(device, []).append(range(g["first_seq"], g["last_seq"] + 1))
    readings = [(seq, kind, device) for seq, kind, device, _ in rows if kind not in ("gap", "event")]
    stored: dict[str, int] = {}
    alarms: dict[str, int] = {}
    claimed: dict[str, int] = {}
    for seq, kind, device in readings:
        stored[device] = stored.get(device, 0) + 1
        alarms[device] = alarms.get(device, 0) + (kind == "alarm")
        if kind != "alarm" and any(seq in r for r in ranges.get(device, [])):
            claimed[device] = claimed.get(device, 0) + 1
    return QuotaAccount(
        result=result,
        missing=set(range(1, result.committed + 1)) - at_hq,
        covered=set().union(*(r for rs in ranges.values() for r in rs)) - at_hq,
        gaps=gaps, stored=stored, alarms=alarms, claimed_but_present=claimed,
    )


def quota_clinic(proxy: NetProxy) -> GatewaySpec:
    monitors = [SimulatedDevice(f"monitor-{i}", "hl7", f"P-{i:04d}", rate=40, seed=60 + i, alarm_every_s=4)
                for i in range(4)]
    return GatewaySpec("gw-quota", "clinic-quota", monitors, heartbeat_s=1, keepalive_s=5,
                       quota_bytes=256 * 1024, broker_via=proxy)


def fill_quota_during_outage(stack: Stack, spec: GatewaySpec, cut: Callable[[], None], drops: int = 3000) -> int:
    """Heavy ingest, `cut()`, wait until the quota has dropped `drops` entries, restore, drain.
    Returns the wall-clock time (ms) of the restore."""
    assert spec.broker_via is not None
    stack.start_gateway(spec)
    eventually(lambda: acked(stack, spec) > 100, 30, "ingest before the cut")
    cut()
    eventually(lambda: outbox_counter(stack, spec, "dropped_total") > drops, 90, "the outage filled the quota")
    restored_ms = time.time_ns() // 1_000_000
    spec.broker_via.restore()
    eventually(lambda: connected(stack, spec), RECONNECT_BOUND_S + 5, "uplink back")
    time.sleep(3.0)  # live traffic and the backlog share the link for a while
    stop_devices_and_drain(stack, spec)
    return restored_ms


@pytest.mark.timeout(240)
def test_outage_fills_the_quota_and_only_explicit_gaps_are_missing(stack: Stack) -> None:
    proxy = stack.broker_proxy(delay_up_ms=20, delay_down_ms=20)
    spec = quota_clinic(proxy)
    fill_quota_during_outage(stack, spec, lambda: proxy.cut(CutMode.RESET))
    account = quota_account(stack, spec.gateway_id)
    result = account.result
    print(f"\nquota: {result}; {len(account.gaps)} gap records covering {len(account.covered)} seqs, "
          f"counting {account.gap_total}; at HQ yet inside their device's gaps: {account.claimed_but_present}; "
          f"proxy {proxy.counters}")
    assert result.dropped > 3000
    assert result.duplicated == 0 and result.out_of_order == 0, result
    # Every committed seq is at HQ (once: checked above) except exactly those inside the gap records' ranges.
    assert account.missing == account.covered
    assert account.gap_total == result.dropped
    assert all(g["lane"] in ("vitals", "backlog", "bulk") for _, g in account.gaps), account.gaps
    # Per device: every reading decoded is at HQ or counted in that device's gaps (a reading HQ committed
    # whose ack the cut lost is in both: see the xfail test below). Alarms live in a lane the quota never
    # touches: each device's alarms reached HQ and no gap stands for one.
    metrics = gateway_metrics(stack, spec.gateway_id)
    for dev in spec.devices:
        decoded = int(metrics[f'gateway_device_records_total{{device="{dev.device_id}"}}'])
        gapped = sum(int(g["count"]) for device, g in account.gaps if device == dev.device_id)
        both = account.claimed_but_present.get(dev.device_id, 0)
        assert account.stored[dev.device_id] + gapped - both == decoded, (dev.device_id, account)
        assert account.alarms[dev.device_id] > 0, dev.device_id
    # Readings both at HQ and in a gap were in flight when the quota dropped them: at the cut, or read for
    # sending after the link came back just before a commit pushed the outbox over its quota again.


@pytest.mark.timeout(240)
@pytest.mark.xfail(strict=True, reason=(
    "bug: a reading HQ committed but whose ack never reached the gateway is later dropped by the quota "
    "and counted in a gap record (gateway/outbox.py Outbox._enforce_quota_sync); HQ keeps the reading and "
    "the gap's count, so the patient page overstates what is missing"))
def test_gap_counts_only_readings_hq_does_not_have(stack: Stack) -> None:
    proxy = stack.broker_proxy(delay_up_ms=20, delay_down_ms=20)
    spec = quota_clinic(proxy)
    # Only the return path fails: batches reach HQ, its acks (and the broker's PUBACKs) do not come back.
    fill_quota_during_outage(stack, spec, lambda: proxy.cut(CutMode.BLACKHOLE, Direction.DOWN))
    account = quota_account(stack, spec.gateway_id)
    print(f"\none-way outage: {account.result}; gaps count {account.gap_total}, missing at HQ "
          f"{len(account.missing)}; at HQ yet inside their device's gaps: {account.claimed_but_present}")
    assert account.missing == account.covered
    assert account.gap_total == len(account.missing)


def set_clock(clock_file: Path, offset: str) -> None:
    """Atomically: libfaketime re-reads the file on every clock call and must never see it half-written."""
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(offset + "\n")
    os.replace(tmp, clock_file)


def libfaketime() -> Path | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1") + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    return Path(found[0]) if found else None


@pytest.mark.timeout(240)
@pytest.mark.skipif(libfaketime() is None, reason="libfaketime is not installed (apt package 'faketime'; "
                                                  "`make test` installs it)")
def test_gateway_clock_jumps_forward_and_back(stack: Stack, tmp_path: Path) -> None:
    library = libfaketime()
    assert library is not None
    clock_file = tmp_path / "faketime"
    set_clock(clock_file, "+0")
    spec = heavy_clinic("gw-clock")
    # Only the gateway's wall clock moves; the simulators (the devices' clocks) and HQ keep real time, and
    # monotonic time (asyncio's timers, paho's keep-alive) is left alone, as NTP stepping the clock would.
    # FAKETIME_FORCE_MONOTONIC_FIX=0: libfaketime turns that fix on by itself for this glibc, and with it the
    # gateway spun at over a core in futex calls (timed pthread waits, the GIL's among them, misbehave) and
    # answered its local API in seconds instead of milliseconds; without it, 40 % of a core as with no preload.
    spec.env = {"LD_PRELOAD": str(library), "FAKETIME_TIMESTAMP_FILE": str(clock_file),
                "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_FORCE_MONOTONIC_FIX": "0"}
    stack.start_gateway(spec)
    eventually(lambda: acked(stack, spec) > 100, 30, "ingest before the jumps")
    for offset in ("+2h", "-3h", "+0"):
        set_clock(clock_file, offset)
        before = acked(stack, spec)
        eventually(lambda b=before: acked(stack, spec) > b + 1000, 20, f"draining after the clock moved {offset}")
        time.sleep(5)
    stop_devices_and_drain(stack, spec)
    result = assert_exactly_once(stack, spec.gateway_id, minimum=5000)
    # The jumps really reached the gateway: its receive times (recv_ms) went 2 h ahead, then 3 h behind.
    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        skew_h = [round((recv - t) / 3_600_000) for recv, t in conn.execute(
            "SELECT recv_ms, time_ms FROM observations WHERE gateway_id = ? AND kind = 'observation'",
            (spec.gateway_id,))]
    finally:
        conn.close()
    print(f"\nclock jumps: {result}; receive-time skew (h): " +
          ", ".join(f"{h:+d}: {skew_h.count(h)}" for h in sorted(set(skew_h))))
    assert {2, -3, 0} <= set(skew_h), sorted(set(skew_h))
    assert result.dropped == 0
    assert rejected_frames(stack, spec.gateway_id) == 0
