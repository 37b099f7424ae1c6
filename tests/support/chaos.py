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


def backlog(stack: Stack, gateway_id: str) -> int:
    return sum(int(b["count"]) for b in stack.gateway_status(gateway_id)["backlog"].values())


def audit(stack: Stack, gateway_id: str) -> Audit:
    status = stack.gateway_status(gateway_id)
    committed = int(status["outbox"]["next_seq"]) - 1
    dropped = int(status["outbox"]["dropped_total"])
    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        seqs = {s for (s,) in conn.execute("SELECT seq FROM observations WHERE gateway_id = ?", (gateway_id,))}
        dup_groups = conn.execute(
            "SELECT count(*) FROM (SELECT device_id, metric, time_ms, value, count(*) AS n FROM observations "
            "WHERE gateway_id = ? AND kind = 'observation' GROUP BY device_id, metric, time_ms, value HAVING n > 1)",
            (gateway_id,)).fetchone()[0]
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
