"""Gateway ingest benchmark: HL7 bytes -> decode -> durable outbox commit, on one core, against raw
sqlite3 executemany of the same rows with the same durability (WAL, synchronous=FULL), same batches.

Prints: gateway_ingest_readings_per_s, raw_sqlite_rows_per_s, gateway_ingest_vs_raw_sqlite,
gateway_store_readings_per_s and gateway_store_vs_raw_sqlite (the outbox alone, no decoding: where the
gap to raw SQLite is), outbox_bytes_per_reading.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devices.hl7 import Hl7Decoder
from devices.hl7_encoder import encode_oru_r01
from devices.mllp import frame
from devices.records import Kind
from devices.simulators.patient import Patient
from gateway.outbox import Outbox, entry_from_record

CHUNK_BYTES = 16 * 1024


def hl7_streams(messages_per_device: int, devices: int = 16) -> tuple[list[bytes], int]:
    """One MLLP stream of PCD-01 messages per simulated monitor; returns (streams, total readings)."""
    streams = []
    readings = 0
    for i in range(devices):
        sim = Patient(seed=i, patient_id=f"P-{i:04d}", device_id=f"mon-{i}")
        t = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
        out = bytearray()
        for n in range(messages_per_device):
            t += timedelta(seconds=1)
            records = [r for r in sim.step(t) if r.kind is not Kind.ALARM]
            out += frame(encode_oru_r01(records, control_id=str(n)))
            readings += len(records)
        streams.append(bytes(out))
    return streams, readings


async def gateway_ingest(streams: list[bytes], path: Path) -> tuple[float, int, int]:
    """Decode + commit every device's stream chunk by chunk, concurrently, as capture does (each device
    awaits its commit before reading on; group commit shares transactions). Returns (s, readings, commits)."""
    ob = Outbox(path, "bench-gw")
    await ob.open()
    readings = 0

    async def device(i: int, stream: bytes) -> None:
        nonlocal readings
        decoder = Hl7Decoder(f"mon-{i}", ZoneInfo("UTC"))
        for start in range(0, len(stream), CHUNK_BYTES):
            recv_ms = time.time_ns() // 1_000_000
            result = decoder.feed(stream[start:start + CHUNK_BYTES])
            if result.records:
                await ob.append([entry_from_record(r, recv_ms) for r in result.records])
                readings += len(result.records)

    start = time.perf_counter()
    await asyncio.gather(*(device(i, s) for i, s in enumerate(streams)))
    elapsed = time.perf_counter() - start
    commits = ob.commits_total
    await ob.close()
    return elapsed, readings, commits


async def store_only(streams: list[bytes], path: Path, per_commit: int) -> tuple[float, int]:
    """The outbox alone: pre-decoded entries appended in commits of `per_commit` (no decode)."""
    entries = []
    for i, stream in enumerate(streams):
        result = Hl7Decoder(f"mon-{i}", ZoneInfo("UTC")).feed(stream)
        entries += [entry_from_record(r, 1_795_300_000_000) for r in result.records]
    ob = Outbox(path, "bench-gw")
    await ob.open()
    start = time.perf_counter()
    for i in range(0, len(entries), per_commit):
        await ob.append(entries[i:i + per_commit])
    elapsed = time.perf_counter() - start
    await ob.close()
    return elapsed, len(entries)


def raw_sqlite(rows: int, commits: int, path: Path) -> float:
    """Same schema and durability, pre-built tuples, same number of transactions."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE lane (seq INTEGER PRIMARY KEY, kind INTEGER, metric INTEGER, value FLOAT,"
                 " unit INTEGER, time_ms INTEGER, recv_delta_ms INTEGER, device INTEGER, patient INTEGER,"
                 " extra TEXT)")
    per_commit = max(1, rows // max(1, commits))
    data = [(i + 1, 0, i % 7, 60.0 + i % 40, 3, 1_795_300_000_000 + i, 25, i % 16, i % 16, None) for i in range(rows)]
    start = time.perf_counter()
    for i in range(0, rows, per_commit):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO lane VALUES (?,?,?,?,?,?,?,?,?,?)", data[i:i + per_commit])
        conn.execute("UPDATE lane SET kind = kind WHERE seq = -1")  # the outbox's next_seq update
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def outbox_bytes_per_reading(path: Path, streams: list[bytes]) -> float:
    await gateway_ingest(streams, path)
    ob = Outbox(path, "bench-gw")
    await ob.open()
    size = await ob.size_bytes()
    count = ob.count()
    await ob.close()
    return size / count


def main() -> None:
    streams, _ = hl7_streams(1500)
    with tempfile.TemporaryDirectory() as d:
        results = []
        for round_ in range(3):  # best of 3 for each side, interleaved: the machine is shared and noisy
            seconds, readings, commits = asyncio.run(gateway_ingest(streams, Path(d) / f"gw{round_}.db"))
            raw_s = raw_sqlite(readings, commits, Path(d) / f"raw{round_}.db")
            store_s, stored = asyncio.run(store_only(streams, Path(d) / f"store{round_}.db", readings // commits))
            results.append((readings / seconds, readings / raw_s, stored / store_s))
        ours = max(r[0] for r in results)
        raw = max(r[1] for r in results)
        store = max(r[2] for r in results)
        print(f"gateway_ingest_readings_per_s: {ours:.0f} readings/s")
        print(f"raw_sqlite_rows_per_s: {raw:.0f} rows/s")
        print(f"gateway_ingest_vs_raw_sqlite: {ours / raw:.2f} ratio")
        print(f"gateway_ingest_commit_batch: {readings / commits:.0f} readings/commit")
        # Diagnostic: the outbox without decoding, against the same baseline.
        print(f"gateway_store_readings_per_s: {store:.0f} readings/s")
        print(f"gateway_store_vs_raw_sqlite: {store / raw:.2f} ratio")
        per_reading = asyncio.run(outbox_bytes_per_reading(Path(d) / "size.db", streams))
        print(f"outbox_bytes_per_reading: {per_reading:.1f} bytes")


if __name__ == "__main__":
    main()
