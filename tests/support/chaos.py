"""Chaos scenarios over the real stack, and the exactly-once audit of what reached HQ.

Shared by tests/chaos (which assert) and bench/chaos.py (which prints chaos_lost / chaos_duplicated).
"""

from __future__ import annotations

import signal
import sqlite3
import time
from dataclasses import dataclass

from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack


@dataclass(frozen=True)
class Audit:
    committed: int  # entries the gateway committed (seq 1..committed)
    dropped: int  # entries the quota dropped (reported as gaps)
    at_hq: int  # rows HQ holds for the gateway
    lost: int  # committed, not dropped, not at HQ
    duplicated: int  # the same device reading stored twice under different seqs
    out_of_order: int  # devices whose readings, in seq order, go back in time


# The same device reading twice under different seqs. Simulated devices' clocks strictly increase, so
# two rows with one device time and metric are one reading stored twice.
_DUPLICATES_SQL = (
    "SELECT count(*) FROM (SELECT count(*) AS n FROM observations WHERE gateway_id = ? AND kind = 'observation' "
    "GROUP BY device_id, metric, time_ms HAVING n > 1)"
)


def backlog(stack: Stack, gateway_id: str) -> int:
    return sum(int(b["count"]) for b in stack.gateway_status(gateway_id)["backlog"].values())


def audit(stack: Stack, gateway_id: str) -> Audit:
    status = stack.gateway_status(gateway_id)
    committed = int(status["outbox"]["next_seq"]) - 1
    dropped = int(status["outbox"]["dropped_total"])
    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        seqs = {s for (s,) in conn.execute("SELECT seq FROM observations WHERE gateway_id = ?", (gateway_id,))}
        dup_groups = conn.execute(_DUPLICATES_SQL, (gateway_id,)).fetchone()[0]
        rows = conn.execute("SELECT device_id, time_ms FROM observations WHERE gateway_id = ? AND kind = "
                            "'observation' ORDER BY seq", (gateway_id,)).fetchall()
    finally:
        conn.close()
    last: dict[str, int] = {}
    backwards: set[str] = set()
    for device, t in rows:
        if t < last.get(device, t):
            backwards.add(device)
        last[device] = t
    missing = len(set(range(1, committed + 1)) - seqs)
    return Audit(committed, dropped, len(seqs), max(0, missing - dropped), int(dup_groups), len(backwards))


def assert_exactly_once(stack: Stack, gateway_id: str, minimum: int) -> Audit:
    """Every entry the gateway committed is at HQ once (or was dropped by the quota), in order per device."""
    result = audit(stack, gateway_id)
    assert result.committed >= minimum, result
    assert result.lost == 0, result
    assert result.duplicated == 0, result
    assert result.out_of_order == 0, result
    assert result.at_hq == result.committed - result.dropped, result
    return result


def heavy_clinic(gateway_id: str = "gw-chaos", monitors: int = 4, rate: float = 20.0) -> GatewaySpec:
    devices = [SimulatedDevice(f"monitor-{i}", "hl7", f"P-{i:04d}", rate=rate, seed=40 + i) for i in range(monitors)]
    # Masimo lines carry whole seconds: faster than 1 Hz, identical lines would look like duplicates.
    devices.append(SimulatedDevice("oxi-1", "masimo", "P-0100", rate=1.0, seed=49))
    return GatewaySpec(gateway_id, "clinic-chaos", devices, heartbeat_s=1, keepalive_s=5)


def stop_devices_and_drain(stack: Stack, spec: GatewaySpec, timeout_s: float = 90) -> None:
    for dev in spec.devices:
        stack.stop_process(f"sim-{spec.gateway_id}-{dev.device_id}")
    time.sleep(1.0)  # the gateway reads what is still in the ptys
    eventually(lambda: backlog(stack, spec.gateway_id) == 0, timeout_s, "outbox drained to HQ")


def kill_gateway_repeatedly(stack: Stack, spec: GatewaySpec, kills: int, run_s: float = 1.0) -> None:
    for _ in range(kills):
        time.sleep(run_s)
        stack.stop_process(f"gw-{spec.gateway_id}", sig=signal.SIGKILL)
        stack.restart_gateway(spec.gateway_id)


def kill_hq_repeatedly(stack: Stack, kills: int, run_s: float = 2.0) -> None:
    for _ in range(kills):
        time.sleep(run_s)
        stack.stop_process("hq", sig=signal.SIGKILL)
        time.sleep(1.0)
        stack.start_hq()


def kill_broker(stack: Stack, down_s: float = 3.0) -> None:
    stack.broker.stop(kill=True)
    time.sleep(down_s)
    stack.broker.start()


def hq_count(stack: Stack, gateway_id: str) -> int:
    """Rows HQ's database holds for the gateway (every kind)."""
    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        return int(conn.execute("SELECT count(*) FROM observations WHERE gateway_id = ?", (gateway_id,)).fetchone()[0])
    finally:
        conn.close()


def gateway_metrics(stack: Stack, gateway_id: str) -> dict[str, float]:
    """The gateway's /metrics as {'name{labels}': value}."""
    import urllib.request

    url = f"http://127.0.0.1:{stack.gateway_http_ports[gateway_id]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    series = (line.rpartition(" ") for line in lines if line and not line.startswith("#"))
    return {name: float(value) for name, _, value in series}


def rejected_frames(stack: Stack, gateway_id: str) -> int:
    """Device frames the gateway's capture rejected (e.g. truncated when it stalled): readings lost before
    the outbox, which the audit cannot see."""
    return int(sum(v for k, v in gateway_metrics(stack, gateway_id).items()
                   if k.startswith("gateway_device_rejected_frames_total")))
