"""HQ's ingest ceiling: several publisher processes, each acting as several gateways, push pre-encoded
500-reading batches into a real Mosquitto and a real `python -m hq serve`, as fast as HQ acknowledges them.

Each simulated gateway behaves like a real one: QoS 1, at most `WINDOW` batches sent and not yet confirmed by
HQ's ack (published only after the database commit), a resend after the ack timeout. The figure is readings
committed per second, checked by counting the rows in the database afterwards. SQLite is measured as deployed
(Litestream replicating, as tests/support/stack.py runs HQ) and without replication. Baselines measured in the
same run: raw sqlite3 executemany of the same rows (same schema and unique key, same transaction size, WAL,
synchronous=FULL), raw psycopg COPY of them into PostgreSQL (one connection), and the publishers' own ceiling
against a broker with no HQ (window released on the broker's PUBACK): whether HQ or the load is the limit.

Prints: publishers_ceiling_readings_per_s, hq_ingest_readings_per_s_sqlite,
hq_ingest_readings_per_s_sqlite_no_replication, raw_sqlite_rows_per_s, hq_ingest_vs_raw_sqlite(_no_replication),
hq_ingest_readings_per_s_postgres, raw_postgres_copy_rows_per_s, hq_ingest_vs_raw_postgres_copy; and per run the
readings per transaction, the CPU (cores, and microseconds per reading) of HQ (with its Litestream), the
publishers, the broker and the PostgreSQL server: on a shared machine CPU per reading varies less than rates.

Environment: HQ_INGEST_READINGS_SQLITE (default 300000), HQ_INGEST_READINGS_POSTGRES (600000),
HQ_INGEST_PUBLISHERS (4 processes), HQ_INGEST_GATEWAYS_PER_PUBLISHER (4), HQ_INGEST_POSTGRES_HQ_WORKERS (2: HQ
processes sharing the data subscription), HQ_INGEST_ONLY (ceiling|sqlite|postgres: run only that part),
HQ_INGEST_HQ_CONFIG (TOML appended to HQ's configuration, e.g. "[ingest]\nmax_batch_records = 5000").
`python -m bench.hq_ingest publish ...` is the publisher process (the benchmark starts it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import wire
from gateway.mqttlink import LinkSettings, Message, MqttError, MqttLink
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port, wait_http_ok
from tests.support.postgres import Postgres

REPO = Path(__file__).resolve().parents[1]
READINGS_SQLITE = int(os.environ.get("HQ_INGEST_READINGS_SQLITE", "300000"))
READINGS_POSTGRES = int(os.environ.get("HQ_INGEST_READINGS_POSTGRES", "600000"))
PUBLISHERS = int(os.environ.get("HQ_INGEST_PUBLISHERS", "4"))
GATEWAYS_PER_PUBLISHER = int(os.environ.get("HQ_INGEST_GATEWAYS_PER_PUBLISHER", "4"))
POSTGRES_HQ_WORKERS = int(os.environ.get("HQ_INGEST_POSTGRES_HQ_WORKERS", "2"))
ONLY = os.environ.get("HQ_INGEST_ONLY", "")
EXTRA_HQ_CONFIG = os.environ.get("HQ_INGEST_HQ_CONFIG", "")
BATCH_RECORDS = 500
WINDOW = 8  # batches in flight per gateway, as the gateway's outbox.max_inflight_batches default
ACK_TIMEOUT_S = 15.0  # as the gateway's outbox.ack_timeout_s default
RUN_TIMEOUT_S = 600.0
START_MS = 1_795_300_000_000

# (metric, unit, typical value, spread): what a bedside monitor and an oximeter report every second.
VITALS = [
    ("MDC_PULS_OXIM_SAT_O2", "%", 96.0, 4),
    ("MDC_PULS_OXIM_PULS_RATE", "/min", 72.0, 30),
    ("MDC_PULS_OXIM_PERF_REL", "%", 2.5, 3),
    ("MDC_ECG_HEART_RATE", "/min", 74.0, 30),
    ("MDC_RESP_RATE", "/min", 16.0, 10),
    ("MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]", 121.0, 40),
    ("MDC_PRESS_BLD_NONINV_DIA", "mm[Hg]", 79.0, 25),
    ("MDC_PRESS_BLD_NONINV_MEAN", "mm[Hg]", 93.0, 30),
    ("MDC_TEMP_BODY", "Cel", 36.8, 2),
]
MONITORS = 16


def gateway_ids(publishers: int, per_publisher: int) -> list[list[str]]:
    return [[f"gw-bench-{p * per_publisher + g}" for g in range(per_publisher)] for p in range(publishers)]


def gateway_records(gateway_id: str, n: int) -> list[wire.WireRecord]:
    """A clinic's vitals: 16 monitors, one patient each, nine metrics a second; seqs 1..n."""
    out = []
    for i in range(n):
        metric, unit, typical, spread = VITALS[i % len(VITALS)]
        monitor = (i // len(VITALS)) % MONITORS
        t = START_MS + (i // (len(VITALS) * MONITORS)) * 1000 + monitor * 7
        value = round(typical + ((i * 7919) % (spread * 10)) / 10 - spread / 2, 1)
        out.append(wire.WireRecord(i + 1, "observation", metric, value, unit, t, t + 35,
                                   f"P-{gateway_id}-{monitor:03d}", f"monitor-{monitor:02d}"))
    return out


def gateway_batches(gateway_id: str, n: int) -> list[wire.Batch]:
    records = gateway_records(gateway_id, n)
    clinic = f"clinic-{gateway_id}"
    return [wire.Batch(gateway_id, clinic, wire.Lane.BACKLOG, START_MS + 3_600_000, records[i:i + BATCH_RECORDS])
            for i in range(0, n, BATCH_RECORDS)]


# ---- the publisher process ---------------------------------------------------------------------
@dataclass
class GatewayLoad:
    gateway_id: str
    batches: list[wire.Batch]
    payloads: list[bytes]
    link: MqttLink
    waiting: dict[int, asyncio.Future[None]]  # batch index -> resolved by HQ's ack
    resent: int = 0

    def on_ack(self, message: Message) -> None:
        ack = wire.decode_ack(message.payload)
        for _lane, first, last in ack.ranges:
            for index in range(max(0, (first - 1) // BATCH_RECORDS), (last - 1) // BATCH_RECORDS + 1):
                fut = self.waiting.get(index)
                b = self.batches[index] if index < len(self.batches) else None
                if fut is not None and b is not None and first <= b.first_seq and b.last_seq <= last \
                        and not fut.done():
                    fut.set_result(None)


async def publish_all(load: GatewayLoad, until_hq_ack: bool) -> None:
    window = asyncio.Semaphore(WINDOW)
    topic = wire.data_topic(load.gateway_id)
    loop = asyncio.get_running_loop()

    async def one(index: int) -> None:
        async with window:
            fut = load.waiting[index] = loop.create_future()
            while True:
                try:
                    await load.link.publish(topic, load.payloads[index], qos=1)
                except MqttError:
                    await asyncio.sleep(0.5)
                    load.resent += 1
                    continue
                if not until_hq_ack:
                    return
                try:
                    async with asyncio.timeout(ACK_TIMEOUT_S):
                        await asyncio.shield(fut)
                    return
                except TimeoutError:
                    load.resent += 1

    await asyncio.gather(*(one(i) for i in range(len(load.payloads))))


async def exit_with_parent(parent: int) -> None:
    """A publisher whose benchmark died must not go on reconnecting to a broker that is gone."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    os._exit(3)


async def publisher(host: str, port: int, gateways: list[str], per_gateway: int, until_hq_ack: bool) -> None:
    loads = []
    for gw in gateways:
        batches = gateway_batches(gw, per_gateway)
        link = MqttLink(LinkSettings(host, port, gw))
        load = GatewayLoad(gw, batches, [wire.encode_batch(b) for b in batches], link, {})
        link.set_handlers(subscriptions=[(wire.ack_topic(gw), 1)], on_message=load.on_ack)
        loads.append(load)
    tasks = [asyncio.create_task(load.link.run()) for load in loads]
    tasks.append(asyncio.create_task(exit_with_parent(os.getppid())))
    for load in loads:
        await load.link.wait_connected(30)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    cpu0, started = time.process_time(), time.time()
    await asyncio.gather(*(publish_all(load, until_hq_ack) for load in loads))
    done = time.time()
    result = {"readings": per_gateway * len(gateways), "started": started, "done": done,
              "cpu_s": time.process_time() - cpu0, "resent": sum(load.resent for load in loads),
              "payload_bytes": sum(len(p) for load in loads for p in load.payloads)}
    for load in loads:
        await load.link.close()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)
    print(json.dumps(result), flush=True)


# ---- the orchestrator --------------------------------------------------------------------------
@dataclass
class LoadResult:
    readings: int
    elapsed_s: float
    publishers_cpu_s: float
    resent: int
    payload_bytes: int


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and its descendants, live or reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = sum(int(f) for f in fields[11:15]) / tick  # utime, stime, cutime, cstime
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def run_load(broker: Mosquitto, readings: int, until_hq_ack: bool) -> LoadResult:
    groups = gateway_ids(PUBLISHERS, GATEWAYS_PER_PUBLISHER)
    per_gateway = readings // (PUBLISHERS * GATEWAYS_PER_PUBLISHER)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "bench.hq_ingest", "publish", "--host", broker.host, "--port", str(broker.port),
         "--gateways", ",".join(gws), "--readings-per-gateway", str(per_gateway),
         *(["--until-hq-ack"] if until_hq_ack else [])],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) for gws in groups]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a publisher did not start (see its stderr above)")
        go = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
            if proc.returncode != 0:
                raise RuntimeError(f"a publisher failed with status {proc.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return LoadResult(sum(r["readings"] for r in results), max(r["done"] for r in results) - go,
                      sum(r["cpu_s"] for r in results), sum(r["resent"] for r in results),
                      sum(r["payload_bytes"] for r in results))


def hq_metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    return {parts[0]: float(parts[1]) for parts in (line.split() for line in lines)
            if len(parts) == 2 and not parts[0].startswith("#")}


@dataclass
class HqRun:
    readings_per_s: float
    per_transaction: float
    load: LoadResult
    hq_cores: float
    broker_cores: float
    server_cores: float  # the database server's process tree (0 for SQLite, which runs inside HQ)


def run_hq(db_url: str, readings: int, label: str, count_rows: Any, server_pid: int | None = None,
           hq_config: str = "", workers: int = 1) -> HqRun:
    """HQ (`workers` processes sharing the data subscription) against a fresh broker; returns readings
    committed per second, checked by a row count."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-hq-ingest-"))
    with Mosquitto() as broker:
        procs, urls = [], []
        try:
            for n in range(1, workers + 1):
                http_port = free_port()
                config = workdir / f"hq-{n}.toml"
                config.write_text(
                    f'[database]\nurl = "{db_url}"\n'
                    f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "hq-{n}"\n'
                    f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n{hq_config}{EXTRA_HQ_CONFIG}\n'
                )
                with open(workdir / f"hq-{n}.log", "ab") as log:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "hq", "serve", "--config", str(config), "--log-level", "WARNING"],
                        cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
                urls.append(f"http://127.0.0.1:{http_port}")
                # One at a time: HQs starting together on an empty database race to create the schema.
                wait_http_ok(urls[-1] + "/healthz", timeout_s=30)
            assert broker.proc is not None
            pids = [*(p.pid for p in procs), broker.proc.pid, server_pid or 0]
            cpu0 = [tree_cpu_s(pid) if pid else 0.0 for pid in pids]
            load = run_load(broker, readings, until_hq_ack=True)
            cpu = [(tree_cpu_s(pid) if pid else 0.0) - c for pid, c in zip(pids, cpu0, strict=True)]
            per_worker = [hq_metrics(url) for url in urls]
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    metrics = {name: sum(m.get(name, 0.0) for m in per_worker) for name in per_worker[0]}
    stored = count_rows()
    if stored != load.readings or metrics["hq_ingest_readings_total"] != load.readings:
        sys.exit(f"{label}: published {load.readings} readings, HQ counted {metrics['hq_ingest_readings_total']:.0f}, "
                 f"the database holds {stored} (logs in {workdir})")
    if load.resent:
        print(f"# {label}: {load.resent} batches had to be resent (HQ logs in {workdir})", flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    hq_cpu, broker_cpu, server_cpu = sum(cpu[:workers]), cpu[workers], cpu[workers + 1]
    return HqRun(stored / load.elapsed_s, stored / max(1.0, metrics["hq_ingest_transactions_total"]), load,
                 hq_cpu / load.elapsed_s, broker_cpu / load.elapsed_s, server_cpu / load.elapsed_s)


def all_rows(readings: int) -> list[dict[str, Any]]:
    """The rows HQ stores for one run, in the order the publishers' gateways produce them."""
    from hq.commit_plan import observation_rows

    per_gateway = readings // (PUBLISHERS * GATEWAYS_PER_PUBLISHER)
    rows: list[dict[str, Any]] = []
    for gws in gateway_ids(PUBLISHERS, GATEWAYS_PER_PUBLISHER):
        for gw in gws:
            for batch in gateway_batches(gw, per_gateway):
                rows += observation_rows(batch, START_MS + 7_200_000, set())
    return rows


def raw_sqlite(path: Path, readings: int, per_transaction: int) -> float:
    """sqlite3 executemany of the same rows into the same schema, same durability and transaction size."""
    from hq import db
    from hq.store import OBSERVATION_COLUMNS

    engine = db.create_engine_for(f"sqlite:///{path}")
    db.create_schema(engine)
    engine.dispose()
    data = [tuple(r[c] for c in OBSERVATION_COLUMNS) for r in all_rows(readings)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    sql = (f"INSERT INTO observations ({', '.join(OBSERVATION_COLUMNS)}) VALUES "
           f"({', '.join('?' * len(OBSERVATION_COLUMNS))}) ON CONFLICT (gateway_id, seq) DO NOTHING")
    start = time.perf_counter()
    for i in range(0, len(data), per_transaction):
        conn.execute("BEGIN")
        conn.executemany(sql, data[i:i + per_transaction])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(data) / elapsed


def raw_postgres_copy(pg: Postgres, readings: int, per_transaction: int) -> float:
    """psycopg COPY of the same rows into the same table (unique key and indexes), same transaction size."""
    import psycopg

    from hq import db
    from hq.store import OBSERVATION_COLUMNS

    dsn = f"host=127.0.0.1 port={pg.port} user={pg.user}"
    with psycopg.connect(dsn + " dbname=postgres", autocommit=True) as admin:
        admin.execute("CREATE DATABASE raw_copy")
    engine = db.create_engine_for(pg.url.rsplit("/", 1)[0] + "/raw_copy")
    db.create_schema(engine)
    engine.dispose()
    data = [tuple(r[c] for c in OBSERVATION_COLUMNS) for r in all_rows(readings)]
    copy_sql = f"COPY observations ({', '.join(OBSERVATION_COLUMNS)}) FROM STDIN"
    with psycopg.connect(dsn + " dbname=raw_copy") as conn:
        start = time.perf_counter()
        for i in range(0, len(data), per_transaction):
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for row in data[i:i + per_transaction]:
                    copy.write_row(row)
            conn.commit()
        elapsed = time.perf_counter() - start
    return len(data) / elapsed


def report_run(label: str, run: HqRun) -> None:
    load = run.load
    print(f"hq_ingest_readings_per_s_{label}: {run.readings_per_s:.0f} readings/s", flush=True)
    print(f"hq_ingest_commit_batch_{label}: {run.per_transaction:.0f} readings/commit")
    print(f"hq_ingest_hq_cpu_{label}: {run.hq_cores:.2f} cores")
    print(f"hq_ingest_hq_cpu_per_reading_{label}: {run.hq_cores / run.readings_per_s * 1e6:.1f} us")
    print(f"hq_ingest_publishers_cpu_{label}: {load.publishers_cpu_s / load.elapsed_s:.2f} cores")
    print(f"hq_ingest_broker_cpu_{label}: {run.broker_cores:.2f} cores")
    if run.server_cores:
        print(f"hq_ingest_server_cpu_{label}: {run.server_cores:.2f} cores")
        print(f"hq_ingest_server_cpu_per_reading_{label}: {run.server_cores / run.readings_per_s * 1e6:.1f} us")
    if load.resent:
        print(f"hq_ingest_resent_batches_{label}: {load.resent} batches")


def main() -> None:
    print(f"# {PUBLISHERS} publisher processes x {GATEWAYS_PER_PUBLISHER} gateways, {BATCH_RECORDS} readings a "
          f"batch, {WINDOW} batches in flight per gateway", flush=True)
    if ONLY in ("", "ceiling"):
        with Mosquitto() as broker:
            ceiling = run_load(broker, max(READINGS_SQLITE, READINGS_POSTGRES), until_hq_ack=False)
        print(f"publishers_ceiling_readings_per_s: {ceiling.readings / ceiling.elapsed_s:.0f} readings/s "
              f"(no HQ: window released on the broker's PUBACK)", flush=True)
        print(f"wire_bytes_per_reading: {ceiling.payload_bytes / ceiling.readings:.1f} bytes")

    if ONLY in ("", "sqlite"):
        runs = {}
        # As deployed (tests/support/stack.py): Litestream replicates the database; then without it, to
        # compare like with like against raw sqlite3 and to show what replication costs.
        for label, replication in (("sqlite", "true"), ("sqlite_no_replication", "false")):
            with tempfile.TemporaryDirectory(prefix="bench-hq-sqlite-") as d:
                path = Path(d) / "hq.db"
                runs[label] = run_hq(f"sqlite:///{path}", READINGS_SQLITE, label, functools.partial(count_sqlite, path),
                                     hq_config=f"[replication]\nenabled = {replication}\n")
                report_run(label, runs[label])
        with tempfile.TemporaryDirectory(prefix="bench-hq-sqlite-raw-") as d:
            plain = runs["sqlite_no_replication"]
            raw = raw_sqlite(Path(d) / "raw.db", plain.load.readings, round(plain.per_transaction))
        print(f"raw_sqlite_rows_per_s: {raw:.0f} rows/s")
        for label, run in runs.items():
            print(f"hq_ingest_vs_raw_{label}: {run.readings_per_s / raw:.2f} ratio", flush=True)

    if ONLY in ("", "postgres"):
        with Postgres() as pg:
            import psycopg

            def count_postgres() -> int:
                with psycopg.connect(f"host=127.0.0.1 port={pg.port} user={pg.user} dbname=postgres") as conn:
                    row = conn.execute("SELECT count(*) FROM observations").fetchone()
                    return int(row[0]) if row else 0

            assert pg.proc is not None
            run = run_hq(pg.url, READINGS_POSTGRES, "postgres", count_postgres, pg.proc.pid,
                         workers=POSTGRES_HQ_WORKERS)
            report_run("postgres", run)
            raw = raw_postgres_copy(pg, run.load.readings, round(run.per_transaction))
            print(f"raw_postgres_copy_rows_per_s: {raw:.0f} rows/s")
            print(f"hq_ingest_vs_raw_postgres_copy: {run.readings_per_s / raw:.2f} ratio", flush=True)


def count_sqlite(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])
    finally:
        conn.close()


def publisher_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hq_ingest publish")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateways", required=True, help="comma-separated gateway ids to impersonate")
    parser.add_argument("--readings-per-gateway", type=int, required=True)
    parser.add_argument("--until-hq-ack", action="store_true",
                        help="hold each batch's window slot until HQ's ack (else until the broker's PUBACK)")
    args = parser.parse_args(argv)
    asyncio.run(publisher(args.host, args.port, args.gateways.split(","), args.readings_per_gateway,
                          args.until_hq_ack))


if __name__ == "__main__":
    if sys.argv[1:2] == ["publish"]:
        publisher_main(sys.argv[2:])
    else:
        main()
