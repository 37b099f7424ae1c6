"""End-to-end benchmark at a clinic's load: 16 HL7 monitors on pseudo-terminals -> gateway -> Mosquitto
-> HQ (SQLite). Latency is from the simulator stamping a reading (OBX-14, just before writing the byte)
to HQ's commit time for its row. Also reports the gateway's resident memory under that load.

Prints: e2e_latency_p50_ms, e2e_latency_p99_ms, e2e_readings, gateway_rss_mb.
"""

from __future__ import annotations

import os
import sqlite3
import time

from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

MONITORS = 16
RATE_PER_MONITOR = 2.5  # messages/s; ~5 readings each: ~200 readings/s, the architecture's worst-case clinic
DURATION_S = 30.0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    devices = [SimulatedDevice(f"monitor-{i:02d}", "hl7", f"P-{i:04d}", rate=RATE_PER_MONITOR, seed=100 + i)
               for i in range(MONITORS)]
    with Stack() as stack:
        stack.start_broker()
        stack.start_hq()
        stack.start_gateway(GatewaySpec("bench-gw", "bench-clinic", devices))
        started_ms = time.time_ns() // 1_000_000 + 2000  # skip the start-up transient
        time.sleep(DURATION_S)
        gateway_rss = rss_mb(stack.procs["gw-bench-gw"].pid)
        for name in [n for n in stack.procs if n.startswith("sim-")]:
            stack.stop_process(name)
        time.sleep(3)  # let the tail drain
        db = stack.db_url.removeprefix("sqlite:///")
        conn = sqlite3.connect(db)
        rows = conn.execute(
            "SELECT hq_ms - time_ms FROM observations WHERE kind = 'observation' AND time_ms >= ?", (started_ms,)
        ).fetchall()
        conn.close()
    latencies = [float(r[0]) for r in rows]
    if not latencies:
        raise SystemExit("e2e benchmark: no readings reached HQ; see the stack logs")
    print(f"e2e_readings: {len(latencies)} readings")
    print(f"e2e_latency_p50_ms: {percentile(latencies, 0.50):.1f} ms")
    print(f"e2e_latency_p99_ms: {percentile(latencies, 0.99):.1f} ms")
    print(f"gateway_rss_mb: {gateway_rss:.1f} MB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
