"""The Outbox: the gateway's durable, prioritised queue of readings waiting for HQ to commit them.

A reading exists once `append()` has returned: it is in SQLite (WAL, synchronous=FULL) under a
gateway-unique, monotonically increasing sequence number. Entries leave their lane only when HQ
acknowledges them (`remove_acked`); with a retention set they move to the `sent` table, where they stay
for that long (or until the quota needs the room) so HQ can ask for a replay (`replay_from`) after
restoring its database. It does not talk to MQTT: the Uplink does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event

from devices.records import Kind, Record
from gateway import quota
from gateway.wire import Lane, LaneBacklog, WireRecord

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1

# Kinds stored as small integers: SQLite stores 0 and 1 in the record header alone.
KIND_CODES: dict[str, int] = {"observation": 0, "alarm": 1, "waveform": 2, "gap": 3, "event": 4}
KIND_NAMES = {v: k for k, v in KIND_CODES.items()}


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing to send: a decoded record or a gateway event, with the gateway's receive time."""

    kind: str
    metric: str
    value: float | None
    unit: str | None
    time_ms: int
    recv_ms: int
    patient_id: str | None
    device_id: str
    extra: dict[str, Any] | None = None
    lane_hint: Lane | None = None  # an event's own lane (e.g. consultation events); else by kind

    @property
    def lane(self) -> Lane:
        if self.lane_hint is not None:
            return self.lane_hint
        return Lane.ALARM if self.kind in ("alarm", "event", "gap") else Lane.VITALS


def entry_from_record(record: Record, recv_ms: int, default_patient_id: str | None = None) -> Entry:
    extra: dict[str, Any] | None = None
    if record.alarm is not None:
        extra = {"alarm": record.alarm.to_json()}
    elif record.kind is Kind.WAVEFORM:
        extra = {"samples": list(record.samples), "sample_period_ms": record.sample_period_ms}
    return Entry(
        kind=str(record.kind),
        metric=record.metric,
        value=record.value,
        unit=record.unit,
        time_ms=int(record.time.timestamp() * 1000),
        recv_ms=recv_ms,
        patient_id=record.patient_id if record.patient_id is not None else default_patient_id,
        device_id=record.device_id,
        extra=extra,
    )


metadata = sa.MetaData()

meta_table = sa.Table(
    "meta", metadata, sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text, nullable=False)
)
strings_table = sa.Table(
    "strings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False, unique=True),
)


def _entry_columns() -> list[sa.Column[Any]]:
    # REAL affinity: SQLite stores whole numbers in a REAL column as small integers on disk, so a
    # SpO2 of 97 takes 1 byte, not 8.
    return [
        sa.Column("kind", sa.Integer, nullable=False),
        sa.Column("metric", sa.Integer, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("unit", sa.Integer),
        sa.Column("time_ms", sa.Integer, nullable=False),
        sa.Column("recv_delta_ms", sa.Integer, nullable=False),
        sa.Column("device", sa.Integer, nullable=False),
        sa.Column("patient", sa.Integer),
        sa.Column("extra", sa.Text),
    ]


def _lane_table(lane: Lane) -> sa.Table:
    # One table per lane keyed by seq (the rowid): draining a lane is a rowid range scan, with no
    # secondary index costing bytes per reading.
    return sa.Table(f"lane_{lane.name.lower()}", metadata,
                    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False), *_entry_columns())


LANE_TABLES: dict[Lane, sa.Table] = {lane: _lane_table(lane) for lane in Lane}
ENTRY_COLUMNS = [c.name for c in LANE_TABLES[Lane.ALARM].columns]  # seq first
_INSERT_SQL = {
    lane: f"INSERT INTO {t.name} ({', '.join(ENTRY_COLUMNS)}) VALUES ({', '.join('?' for _ in ENTRY_COLUMNS)})"
    for lane, t in LANE_TABLES.items()
}

# Entries HQ confirmed, kept for a replay; `lane` is where each came from.
sent_table = sa.Table("sent", metadata, sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
                      sa.Column("lane", sa.Integer, nullable=False), *_entry_columns())
# One row per confirmed seq run: when it was confirmed, so retention can expire the oldest first.
sent_marks = sa.Table(
    "sent_marks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("acked_ms", sa.Integer, nullable=False),
    sa.Column("first_seq", sa.Integer, nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
)
# Messages from HQ (downlink), by HQ's id: the gateway's durable copy, and what it made of each.
inbox_table = sa.Table(
    "inbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # JSON
    sa.Column("hq_ms", sa.Integer, nullable=False),
    sa.Column("received_ms", sa.Integer, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),  # stored | applied | rejected
    sa.Column("detail", sa.Text),
)
_KEEP_SENT_SQL = {
    lane: f"INSERT INTO sent (lane, {', '.join(ENTRY_COLUMNS)}) SELECT {int(lane)}, {', '.join(ENTRY_COLUMNS)} "
          f"FROM {t.name} WHERE seq BETWEEN ? AND ?"
    for lane, t in LANE_TABLES.items()
}
_DELETE_SQL = {lane: f"DELETE FROM {t.name} WHERE seq BETWEEN ? AND ?" for lane, t in LANE_TABLES.items()}
MARKS_PER_TRANSACTION = 1000  # expiring retention in short transactions: appends wait behind them


class OutboxError(Exception):
    """The outbox cannot store or read entries (disk full, corrupt database, wrong gateway)."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: in WAL mode, NORMAL only survives a process crash; FULL fsyncs the WAL on every commit
    # so a committed reading also survives power loss. Group commit keeps the fsync rate low.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=OFF")
    cur.close()


class Outbox:
    """Durable prioritised queue. All database work runs on one dedicated thread, in order.

    `append()` group-commits: concurrent callers (one per device) share one transaction and one fsync.
    """

    def __init__(self, path: Path, gateway_id: str, *, quota_bytes: int | None = None,
                 retain_sent_ms: int = 0) -> None:
        self.path = path
        self.gateway_id = gateway_id
        self.quota_bytes = quota_bytes
        self.retain_sent_ms = retain_sent_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        self._engine: sa.Engine | None = None
        self._conn: sa.Connection | None = None
        self._strings: dict[str, int] = {}
        self._strings_rev: dict[int, str] = {}
        self._committed_string_ids: set[int] = set()
        self._next_seq = 1
        self._counts: dict[Lane, int] = dict.fromkeys(Lane, 0)
        self._sent_count = 0
        # (last seq, newest receive time) of each commit's live vitals: where the live window ends.
        self._vitals_marks: deque[tuple[int, int]] = deque()
        self._pending: list[tuple[list[Entry], asyncio.Future[list[int]]]] = []
        self._commit_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.changed = asyncio.Event()
        self.appended_total = 0
        self.removed_total = 0
        self.dropped_total = 0  # entries the quota forced out (each drop recorded as a gap entry)
        self.expired_total = 0  # confirmed entries deleted after their retention or for the quota
        self.replayed_total = 0  # confirmed entries put back to be sent again at HQ's request
        self.demoted_total = 0  # live vitals moved to the backlog lane after outliving the live window
        self.commits_total = 0

    # ---- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._run(self._open_sync)

    async def close(self) -> None:
        if self._commit_task is not None:
            await asyncio.shield(self._commit_task)
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"cannot create the outbox directory {self.path.parent}: {exc.strerror}") from exc
        engine = sa.create_engine(f"sqlite:///{self.path}", poolclass=sa.pool.StaticPool)
        event.listen(engine, "connect", _sqlite_pragmas)
        self._engine = engine
        conn = engine.connect()
        self._conn = conn
        try:
            with self._transaction(conn):
                metadata.create_all(conn)
                rows = dict(conn.execute(sa.select(meta_table.c.key, meta_table.c.value)).all())
                if "gateway_id" not in rows:
                    conn.execute(meta_table.insert(), [
                        {"key": "gateway_id", "value": self.gateway_id},
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                        {"key": "next_seq", "value": "1"},
                    ])
                    rows = {"gateway_id": self.gateway_id, "next_seq": "1"}
                elif rows["gateway_id"] != self.gateway_id:
                    raise OutboxError(
                        f"{self.path} belongs to gateway {rows['gateway_id']!r}, not {self.gateway_id!r}; "
                        "refusing to mix sequence numbers of two gateways"
                    )
                next_seq = int(rows["next_seq"])
                for lane, table in LANE_TABLES.items():
                    max_seq = conn.execute(sa.select(sa.func.max(table.c.seq))).scalar()
                    if max_seq is not None:
                        next_seq = max(next_seq, max_seq + 1)
                    self._counts[lane] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                sent_max = conn.execute(sa.select(sa.func.max(sent_table.c.seq))).scalar()
                if sent_max is not None:
                    next_seq = max(next_seq, sent_max + 1)
                self._sent_count = conn.execute(sa.select(sa.func.count()).select_from(sent_table)).scalar_one()
                self._next_seq = next_seq
                vitals = LANE_TABLES[Lane.VITALS]
                last = conn.execute(sa.select(vitals.c.seq, vitals.c.time_ms, vitals.c.recv_delta_ms)
                                    .order_by(vitals.c.seq.desc()).limit(1)).first()
                if last is not None:
                    self._vitals_marks.append((last.seq, last.time_ms + last.recv_delta_ms))
                for sid, text in conn.execute(sa.select(strings_table.c.id, strings_table.c.text)):
                    self._strings[text] = sid
                    self._strings_rev[sid] = text
                self._committed_string_ids = set(self._strings_rev)
        except sa.exc.SQLAlchemyError as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {getattr(exc, 'orig', None) or exc}") from exc

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._engine is not None:
            self._engine.dispose()
        self._conn = None

    @staticmethod
    def _transaction(conn: sa.Connection) -> sa.RootTransaction:
        # A transaction left open by a failed statement would make every later begin() fail:
        # start each unit of work from a clean connection.
        if conn.in_transaction():
            conn.rollback()
        return conn.begin()

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._loop is not None
        try:
            return await self._loop.run_in_executor(self._executor, fn, *args)
        except sa.exc.SQLAlchemyError as exc:
            raise OutboxError(f"outbox {self.path}: {getattr(exc, 'orig', None) or exc}") from exc

    # ---- writing ---------------------------------------------------------------------------
    async def append(self, entries: Sequence[Entry]) -> list[int]:
        """Store entries durably; returns their sequence numbers once committed (fsynced)."""
        if not entries:
            return []
        assert self._loop is not None
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        self._pending.append((list(entries), fut))
        if self._commit_task is None or self._commit_task.done():
            self._commit_task = self._loop.create_task(self._commit_pending())
        return await fut

    async def _commit_pending(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                seqs = await self._run(self._commit_sync, [e for entries, _ in group for e in entries])
            except Exception as exc:
                log.error("outbox commit of %d entries failed: %s", sum(len(e) for e, _ in group), exc)
                for _entries, fut in group:
                    if not fut.done():
                        fut.set_exception(OutboxError(f"outbox commit failed: {exc}"))
                continue
            start = 0
            for entries, fut in group:
                if not fut.done():
                    fut.set_result(seqs[start:start + len(entries)])
                start += len(entries)
            if self.quota_bytes is not None:
                try:
                    await self._run(self._enforce_quota_sync)
                except OutboxError as exc:
                    log.error("enforcing the outbox quota failed: %s", exc)
            self.changed.set()

    def _intern(self, conn: sa.Connection, text: str) -> int:
        sid = self._strings.get(text)
        if sid is None:
            sid = conn.execute(strings_table.insert().values(text=text)).inserted_primary_key[0]  # type: ignore[index]
            self._strings[text] = sid
            self._strings_rev[sid] = text
        return sid

    def _commit_sync(self, entries: list[Entry]) -> list[int]:
        conn = self._conn
        assert conn is not None
        with self._rollback_forgets_strings(), self._transaction(conn):
            by_lane, first_seq, seq = self._insert_entries(conn, entries)
        self._inserted(by_lane, seq)
        self.appended_total += len(entries)
        self.commits_total += 1
        return list(range(first_seq, seq))

    @contextlib.contextmanager
    def _rollback_forgets_strings(self) -> Iterator[None]:
        try:
            yield
        except Exception:
            # The transaction rolled back: forget strings interned inside it.
            for text, sid in list(self._strings.items()):
                if sid not in self._committed_string_ids:
                    del self._strings[text]
                    self._strings_rev.pop(sid, None)
            raise

    def _insert_entries(
        self, conn: sa.Connection, entries: list[Entry]
    ) -> tuple[dict[Lane, list[tuple[Any, ...]]], int, int]:
        """Insert inside the caller's transaction; returns (rows by lane, first seq, next seq)."""
        by_lane: dict[Lane, list[tuple[Any, ...]]] = {}
        first_seq = seq = self._next_seq
        intern = self._intern
        for e in entries:
            rows = by_lane.get(e.lane)
            if rows is None:
                rows = by_lane[e.lane] = []
            rows.append((
                seq,
                KIND_CODES[e.kind],
                intern(conn, e.metric),
                e.value,
                None if e.unit is None else intern(conn, e.unit),
                e.time_ms,
                e.recv_ms - e.time_ms,
                intern(conn, e.device_id),
                None if e.patient_id is None else intern(conn, e.patient_id),
                None if e.extra is None else json.dumps(e.extra, separators=(",", ":")),
            ))
            seq += 1
        for lane, rows in by_lane.items():
            # Tuples straight to the driver's executemany: per-row dict binding would cost
            # more than the insert itself on the gateway's hot path.
            conn.exec_driver_sql(_INSERT_SQL[lane], rows)
        conn.execute(meta_table.update().where(meta_table.c.key == "next_seq").values(value=str(seq)))
        return by_lane, first_seq, seq

    async def commit_with(self, work: Callable[[sa.Connection], T], entries: Sequence[Entry]) -> tuple[T, list[int]]:
        """Run `work(conn)` (other tables of the gateway's database, e.g. the inbox) and append `entries` in one
        transaction: both are stored or neither is. Returns work's result and the entries' seqs."""
        result, seqs = await self._run(self._commit_with_sync, work, list(entries))
        if seqs:
            self.changed.set()
        return result, seqs

    def _commit_with_sync(self, work: Callable[[sa.Connection], T], entries: list[Entry]) -> tuple[T, list[int]]:
        conn = self._conn
        assert conn is not None
        with self._rollback_forgets_strings(), self._transaction(conn):
            result = work(conn)
            by_lane, first_seq, seq = self._insert_entries(conn, entries) if entries else ({}, self._next_seq,
                                                                                          self._next_seq)
        self._inserted(by_lane, seq)
        self.appended_total += len(entries)
        self.commits_total += 1
        return result, list(range(first_seq, seq))

    async def query(self, read: Callable[[sa.Connection], T]) -> T:
        """Run `read(conn)` on the gateway's database (in its thread, in a transaction of its own)."""
        return await self._run(self._query_sync, read)  # type: ignore[no-any-return]

    def _query_sync(self, read: Callable[[sa.Connection], T]) -> T:
        conn = self._conn
        assert conn is not None
        with self._transaction(conn):
            return read(conn)

    def _inserted(self, by_lane: dict[Lane, list[tuple[Any, ...]]], next_seq: int) -> None:
        """Bookkeeping once an insert's transaction has committed."""
        self._committed_string_ids.update(self._strings_rev)
        self._next_seq = next_seq
        for lane, rows in by_lane.items():
            self._counts[lane] += len(rows)
        live = by_lane.get(Lane.VITALS)
        if live:
            self._vitals_marks.append((live[-1][0], max(r[5] + r[6] for r in live)))

    # ---- reading and removing ----------------------------------------------------------------
    async def read_lane(self, lane: Lane, after_seq: int, limit: int) -> list[WireRecord]:
        return list(await self._run(self._read_sync, lane, after_seq, limit))

    def _read_sync(self, lane: Lane, after_seq: int, limit: int) -> list[WireRecord]:
        conn = self._conn
        assert conn is not None
        t = LANE_TABLES[lane]
        with self._transaction(conn):
            rows = conn.execute(
                sa.select(t).where(t.c.seq > after_seq).order_by(t.c.seq).limit(limit)
            ).all()
        s = self._strings_rev
        return [
            WireRecord(
                seq=r.seq, kind=KIND_NAMES[r.kind], metric=s[r.metric],
                value=None if r.value is None else float(r.value),
                unit=None if r.unit is None else s[r.unit], time_ms=r.time_ms,
                recv_ms=r.time_ms + r.recv_delta_ms, patient_id=None if r.patient is None else s[r.patient],
                device_id=s[r.device], extra=None if r.extra is None else json.loads(r.extra),
            )
            for r in rows
        ]

    async def remove_acked(self, ranges: Iterable[tuple[Lane, int, int]]) -> int:
        """Take entries HQ has committed out of their lanes (into `sent` when retention is on).
        Idempotent: removing an absent range does nothing."""
        return int(await self._run(self._remove_sync, list(ranges)))

    def _remove_sync(self, ranges: list[tuple[Lane, int, int]]) -> int:
        conn = self._conn
        assert conn is not None
        removed = kept = 0
        now_ms = time.time_ns() // 1_000_000
        with self._transaction(conn):
            for lane, first, last in ranges:
                if self.retain_sent_ms:
                    n_kept = conn.exec_driver_sql(_KEEP_SENT_SQL[lane], (first, last)).rowcount
                    if n_kept:
                        conn.execute(sent_marks.insert().values(acked_ms=now_ms, first_seq=first, last_seq=last))
                    kept += n_kept
                n = conn.exec_driver_sql(_DELETE_SQL[lane], (first, last)).rowcount
                self._counts[lane] -= n
                removed += n
        self._sent_count += kept
        self.removed_total += removed
        return removed

    # ---- confirmed entries kept for a replay -------------------------------------------------
    async def expire_sent(self, confirmed_before_ms: int) -> int:
        """Delete kept entries HQ confirmed before the given time; returns how many."""
        total = 0
        while True:
            n, more = await self._run(self._expire_sync, confirmed_before_ms, None)
            total += int(n)
            if not more:
                return total

    def _expire_sync(self, confirmed_before_ms: int | None, at_least: int | None) -> tuple[int, bool]:
        """Delete the oldest confirmed runs, those confirmed before a time or at least a number of entries.
        Returns (entries deleted, whether more runs qualify than one transaction took)."""
        conn = self._conn
        assert conn is not None
        with self._transaction(conn):
            return self._expire_in(conn, confirmed_before_ms, at_least)

    def _expire_in(self, conn: sa.Connection, confirmed_before_ms: int | None,
                   at_least: int | None) -> tuple[int, bool]:
        q = sa.select(sent_marks.c.id, sent_marks.c.first_seq, sent_marks.c.last_seq).order_by(sent_marks.c.id)
        if confirmed_before_ms is not None:
            q = q.where(sent_marks.c.acked_ms < confirmed_before_ms)
        marks = conn.execute(q.limit(MARKS_PER_TRANSACTION + 1)).all()
        deleted = 0
        done_upto = None
        for i, (mark_id, first, last) in enumerate(marks):
            if i == MARKS_PER_TRANSACTION or (at_least is not None and deleted >= at_least):
                break
            deleted += conn.execute(sent_table.delete().where(sent_table.c.seq.between(first, last))).rowcount
            done_upto = mark_id
        if done_upto is not None:
            conn.execute(sent_marks.delete().where(sent_marks.c.id <= done_upto))
        self._sent_count -= deleted
        self.expired_total += deleted
        more = len(marks) > MARKS_PER_TRANSACTION and (at_least is None or deleted < at_least)
        return deleted, more

    async def replay_from(self, request_id: str, from_seq: int) -> int | None:
        """Put kept entries from `from_seq` on back into their lanes (live vitals into the backlog lane),
        to be sent again. Carried out once per `request_id`: returns None for one already done."""
        result = await self._run(self._replay_sync, request_id, from_seq)
        return None if result is None else int(result)

    def _replay_sync(self, request_id: str, from_seq: int) -> int | None:
        conn = self._conn
        assert conn is not None
        done = meta_table.c.key == "replay_done"
        moved: dict[Lane, int] = {}
        with self._transaction(conn):
            if conn.execute(sa.select(meta_table.c.value).where(done)).scalar() == request_id:
                return None
            for source in Lane:
                target = Lane.BACKLOG if source is Lane.VITALS else source
                picked = sa.select(*(sent_table.c[name] for name in ENTRY_COLUMNS)).where(
                    sent_table.c.seq >= from_seq, sent_table.c.lane == int(source))
                n = conn.execute(LANE_TABLES[target].insert().from_select(ENTRY_COLUMNS, picked)).rowcount
                if n:
                    moved[target] = moved.get(target, 0) + n
            conn.execute(sent_table.delete().where(sent_table.c.seq >= from_seq))
            conn.execute(meta_table.delete().where(done))
            conn.execute(meta_table.insert().values(key="replay_done", value=request_id))
        total = sum(moved.values())
        for lane, n in moved.items():
            self._counts[lane] += n
        self._sent_count -= total
        self.replayed_total += total
        return total

    @property
    def retained(self) -> int:
        """Confirmed entries kept for a replay."""
        return self._sent_count

    async def floor(self) -> int:
        """Every seq below this one HQ has confirmed, or the quota dropped with a gap entry saying so."""
        return int(await self._run(self._floor_sync))

    def _floor_sync(self) -> int:
        conn = self._conn
        assert conn is not None
        lowest = self._next_seq
        with self._transaction(conn):
            for lane, t in LANE_TABLES.items():
                if self._counts[lane]:
                    first = conn.execute(sa.select(sa.func.min(t.c.seq))).scalar()
                    if first is not None:
                        lowest = min(lowest, first)
        return lowest

    def _used_bytes(self, conn: sa.Connection) -> int:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int((pages - free) * size)

    def _enforce_quota_sync(self) -> None:
        """Over quota: drop the oldest entries of the lowest lanes and record what went as gap entries."""
        conn = self._conn
        assert conn is not None and self.quota_bytes is not None
        with self._transaction(conn):
            used = self._used_bytes(conn)
        drop_sent, plan = quota.plan_drop(used, self.quota_bytes, self._counts, self._sent_count)
        if drop_sent:
            # Already at HQ: going costs nothing but the chance of a replay, so no gap is recorded.
            with self._transaction(conn):
                expired, _more = self._expire_in(conn, None, drop_sent)
            log.warning("outbox over its quota (%d > %d bytes): deleted %d entries HQ had confirmed",
                        used, self.quota_bytes, expired)
        if not plan:
            if used > self.quota_bytes and not drop_sent:
                log.critical("outbox %s is over its quota (%d > %d bytes) with only alarms and consultation "
                             "events, which are never dropped", self.path, used, self.quota_bytes)
            return
        now_ms = time.time_ns() // 1_000_000
        gaps: list[Entry] = []
        dropped: dict[Lane, int] = {}
        # Dropping and recording the gap are one transaction: a crash between them must not lose the gap.
        with self._rollback_forgets_strings(), self._transaction(conn):
            for lane, n in plan:
                t = LANE_TABLES[lane]
                upto = conn.execute(sa.select(t.c.seq).order_by(t.c.seq).offset(n - 1).limit(1)).scalar_one()
                summary = conn.execute(
                    sa.select(t.c.device, t.c.patient, sa.func.count(), sa.func.min(t.c.time_ms),
                              sa.func.max(t.c.time_ms), sa.func.min(t.c.seq), sa.func.max(t.c.seq))
                    .where(t.c.seq <= upto).group_by(t.c.device, t.c.patient)
                ).all()
                dropped[lane] = conn.execute(t.delete().where(t.c.seq <= upto)).rowcount
                for device, patient, count, first_ms, last_ms, first_seq, last_seq in summary:
                    gaps.append(Entry(
                        kind="gap", metric="OUTBOX_QUOTA", value=float(count), unit=None, time_ms=first_ms,
                        recv_ms=now_ms, patient_id=None if patient is None else self._strings_rev[patient],
                        device_id=self._strings_rev[device],
                        extra={"reason": "outbox quota", "lane": lane.name.lower(), "count": count,
                               "from_ms": first_ms, "to_ms": last_ms, "first_seq": first_seq,
                               "last_seq": last_seq},
                    ))
            by_lane, _first, next_seq = self._insert_entries(conn, gaps)
        self._inserted(by_lane, next_seq)
        self.appended_total += len(gaps)
        for lane, n in dropped.items():
            self._counts[lane] -= n
            self.dropped_total += n
        log.warning("outbox over its quota (%d > %d bytes): dropped %s", used, self.quota_bytes,
                    ", ".join(f"{n} oldest {lane.name.lower()}" for lane, n in dropped.items()))

    async def demote_stale_vitals(self, received_before_ms: int, after_seq: int) -> int:
        """Move live vitals received before `received_before_ms` to the backlog lane, so fresh vitals go
        out first when a link comes back. Entries up to `after_seq` (already sent) stay where they are."""
        upper = 0
        marks = self._vitals_marks
        while marks and marks[0][1] < received_before_ms:
            upper = marks.popleft()[0]
        if upper <= after_seq:
            return 0
        moved = int(await self._run(self._move_sync, Lane.VITALS, Lane.BACKLOG, after_seq, upper))
        self.demoted_total += moved
        return moved

    def _move_sync(self, source: Lane, target: Lane, after_seq: int, upto_seq: int) -> int:
        conn = self._conn
        assert conn is not None
        src, dst = LANE_TABLES[source], LANE_TABLES[target]
        in_range = sa.and_(src.c.seq > after_seq, src.c.seq <= upto_seq)
        with self._transaction(conn):
            conn.execute(dst.insert().from_select([c.name for c in src.columns], sa.select(src).where(in_range)))
            moved = conn.execute(src.delete().where(in_range)).rowcount
        self._counts[source] -= moved
        self._counts[target] += moved
        return int(moved)

    async def backlog(self) -> dict[Lane, LaneBacklog]:
        return dict(await self._run(self._backlog_sync))

    def _backlog_sync(self) -> dict[Lane, LaneBacklog]:
        conn = self._conn
        assert conn is not None
        out: dict[Lane, LaneBacklog] = {}
        with self._transaction(conn):
            for lane, t in LANE_TABLES.items():
                count = self._counts[lane]
                oldest = None
                if count:
                    row = conn.execute(
                        sa.select(t.c.time_ms, t.c.recv_delta_ms).order_by(t.c.seq).limit(1)
                    ).first()
                    if row is not None:
                        oldest = row.time_ms + row.recv_delta_ms
                out[lane] = LaneBacklog(count, oldest)
        return out

    def count(self, lane: Lane | None = None) -> int:
        return self._counts[lane] if lane is not None else sum(self._counts.values())

    @property
    def next_seq(self) -> int:
        return self._next_seq

    async def size_bytes(self) -> int:
        return int(await self._run(self._size_sync))

    def _size_sync(self) -> int:
        conn = self._conn
        assert conn is not None
        with self._transaction(conn):
            return self._used_bytes(conn)



RESTORE_SEQ_MARGIN = 10_000_000


def skip_seqs_after_restore(path: Path, margin: int = RESTORE_SEQ_MARGIN) -> tuple[int, int]:
    """After restoring the outbox from a replica: move `next_seq` forward by `margin`.

    A replica lags the live database by up to a sync interval, so the last sequence numbers the lost
    database handed out (and HQ may hold) are not in the restored copy. Reusing them would make HQ
    discard new readings as duplicates. Returns (old next_seq, new next_seq).
    """
    import sqlite3

    if not path.is_file():
        raise OutboxError(f"there is no outbox database at {path}")
    conn = sqlite3.connect(path)
    try:
        with conn:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = None
            if "meta" in tables:
                row = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
            if row is None or not {t.name for t in [*LANE_TABLES.values(), sent_table]} <= tables:
                raise OutboxError(f"{path} is not an outbox database (no next_seq in its meta table)")
            highest = max(int(row[0]) - 1, *(
                conn.execute(f"SELECT coalesce(max(seq), 0) FROM {t.name}").fetchone()[0]
                for t in [*LANE_TABLES.values(), sent_table]))
            old, new = highest + 1, highest + 1 + margin
            conn.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (str(new),))
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot update {path} after the restore: {exc}") from exc
    finally:
        conn.close()
    return old, new
