"""Store-and-forward figures: a gateway that was offline comes back with a 1,000,000-reading backlog.

Measures how fast the backlog drains into HQ's database (SQLite, then PostgreSQL), HQ's ingest rate while
saturated, and how long alarms raised *during* the drain take to reach HQ's database.
The gateway reaches the broker over a WAN with a 100 ms round trip (DRAIN_RTT_MS; 0 for plain loopback):
a userspace TCP proxy delays each direction by half of it (this machine has no tc netem).
The uplink has one batch in flight per round trip (it awaits each PUBACK before the next publish, so
outbox.max_inflight_batches does not widen the window): the gateway here sends batches of 5,000 readings
(default 500: 3,100 readings/s at 100 ms; 5,000: 13,000).

Prints: drain_rtt_ms, drain_readings_per_s, hq_ingest_readings_per_s_sqlite, alarm_latency_under_backlog_p50_ms,
alarm_latency_under_backlog_p99_ms, then drain_readings_per_s_postgres, hq_ingest_readings_per_s_postgres.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path

from gateway.outbox import Entry, Outbox
from tests.support.ports import eventually
from tests.support.postgres import Postgres
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

BACKLOG = int(os.environ.get("DRAIN_BACKLOG", "1000000"))
RTT_MS = float(os.environ.get("DRAIN_RTT_MS", "100"))
BATCH_MAX_RECORDS = 500  # the gateway default: the in-flight window, not batch size, covers the round trip
METRICS = ["MDC_PULS_OXIM_SAT_O2", "MDC_PULS_OXIM_PULS_RATE", "MDC_ECG_HEART_RATE", "MDC_RESP_RATE",
           "MDC_PULS_OXIM_PERF_REL"]


async def prefill(path: Path, gateway_id: str, n: int) -> None:
    """A day offline at a busy clinic: n vitals from 16 monitors, received an hour and more ago."""
    ob = Outbox(path, gateway_id)
    await ob.open()
    start_ms = time.time_ns() // 1_000_000 - 3_600_000 - n * 5
    chunk = 20_000
    for base in range(0, n, chunk):
        await ob.append([
            Entry("observation", METRICS[i % 5], float(60 + i % 40), "/min", start_ms + i * 5, start_ms + i * 5 + 40,
                  f"P-{i % 16:04d}", f"monitor-{i % 16:02d}")
            for i in range(base, min(n, base + chunk))
        ])
    await ob.close()


def hq_readings_total(stack: Stack) -> float:
    with urllib.request.urlopen(stack.hq_url + "/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("hq_ingest_readings_total "):
                return float(line.split()[1])
    raise RuntimeError("hq_ingest_readings_total missing from HQ /metrics")


def waiting(stack: Stack, gateway_id: str) -> int:
    lanes = stack.gateway_status(gateway_id)["backlog"]
    return int(lanes["vitals"]["count"]) + int(lanes["backlog"]["count"])


def run(db_url: str | None, label: str) -> list[float]:
    gateway_id = "gw-drain"
    # Live monitors whose patients desaturate over and over: their alarms must overtake the backlog.
    monitors = [SimulatedDevice(f"monitor-live-{i}", "hl7", f"P-LIVE-{i}", rate=1, seed=70 + i, alarm_every_s=1)
                for i in range(8)]
    spec = GatewaySpec(gateway_id, "clinic-drain", monitors, heartbeat_s=1,
                       outbox_options={"batch_max_records": BATCH_MAX_RECORDS})
    with Stack(db_url=db_url) as stack:
        asyncio.run(prefill(stack.dir / gateway_id / "outbox.db", gateway_id, BACKLOG))
        stack.start_broker()
        spec.broker_via = stack.broker_proxy(delay_up_ms=RTT_MS / 2, delay_down_ms=RTT_MS / 2)
        stack.start_hq()
        before = hq_readings_total(stack)
        started = time.monotonic()
        stack.start_gateway(spec)
        eventually(lambda: waiting(stack, gateway_id) < 200, timeout_s=900, what="backlog drained")
        elapsed = time.monotonic() - started
        ingested = hq_readings_total(stack) - before
        if ingested < BACKLOG:
            sys.exit(f"drain{label}: HQ counted {ingested} new readings, the backlog held {BACKLOG}")
        print(f"drain_readings_per_s{label}: {BACKLOG / elapsed:.0f} readings/s", flush=True)
        if db_url is not None:
            return []
        conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
        latencies = [float(r[0]) for r in conn.execute(
            "SELECT hq_ms - time_ms FROM observations WHERE gateway_id = ? AND kind = 'alarm'", (gateway_id,))]
        conn.close()
    return latencies


def main() -> None:
    print(f"drain_rtt_ms: {RTT_MS:.0f} ms", flush=True)
    latencies = sorted(run(None, ""))
    if not latencies:
        sys.exit("no alarm reached HQ during the drain")
    print(f"alarms_during_drain: {len(latencies)} alarms")
    print(f"alarm_latency_under_backlog_p50_ms: {latencies[len(latencies) // 2]:.0f} ms")
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    print(f"alarm_latency_under_backlog_p99_ms: {p99:.0f} ms")
    with Postgres() as pg:
        run(pg.url, "_postgres")


if __name__ == "__main__":
    main()
