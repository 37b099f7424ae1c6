"""The observation rollup: a background task that sums each gateway's readings into daily (UTC) rollups per
patient key and metric, copies alarms and gaps out for the timeline, and gives device patient ids HQ does not know a
provisional patient record, exactly once per reading.

It reads only what HQ holds completely: seqs below the gateway's `complete_below` (every lower seq has arrived,
so the range never changes again). Progress is a per-gateway watermark advanced by compare-and-set in the
same transaction as the sums, so two HQ workers can run it at once. It does not serve anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, records, store
from hq.appkeys import CONFIG, ENGINE
from hq.clock import now_ms
from hq.models import gateways, observation_highlights, observation_rollups, observations, rollup_progress
from hq.patient_timeline import DAY_MS, HIGHLIGHT_KINDS, ROLLED_KINDS

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RollupStats:
    rows: int = 0  # readings summed
    chunks: int = 0
    conflicts: int = 0  # chunks another worker did first
    provisional_patients: int = 0
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    gateway_id: str
    start: int  # first seq
    end: int  # one past the last


def due_chunks(conn: sa.Connection, chunk_rows: int) -> list[Chunk]:
    """For each gateway with completely held readings not yet summed, the next range to sum."""
    p = rollup_progress
    rows = conn.execute(sa.select(gateways.c.id, gateways.c.complete_below, p.c.rolled_below)
                        .select_from(gateways.outerjoin(p, p.c.gateway_id == gateways.c.id))
                        .order_by(gateways.c.id)).all()
    chunks = []
    for gateway_id, complete_below, rolled_below in rows:
        start, end = int(rolled_below or 1), int(complete_below or 0)
        if end > start:
            chunks.append(Chunk(gateway_id, start, min(end, start + chunk_rows)))
    return chunks


def _range(chunk: Chunk) -> tuple[sa.ColumnElement[bool], ...]:
    o = observations
    return (o.c.gateway_id == chunk.gateway_id, o.c.seq >= chunk.start, o.c.seq < chunk.end,
            o.c.patient_id.is_not(None), o.c.kind.in_(ROLLED_KINDS))


def _sums(conn: sa.Connection, chunk: Chunk) -> list[dict[str, Any]]:
    o = observations
    day = ((o.c.time_ms // DAY_MS) * DAY_MS).label("day_ms")
    q = (sa.select(o.c.clinic_id, o.c.patient_id, day, o.c.metric, o.c.kind, sa.func.max(o.c.unit).label("unit"),
                   sa.func.count().label("count"), sa.func.count(o.c.value).label("value_count"),
                   sa.func.min(o.c.value).label("value_min"), sa.func.max(o.c.value).label("value_max"),
                   sa.func.sum(o.c.value).label("value_sum"), sa.func.min(o.c.time_ms).label("first_ms"),
                   sa.func.max(o.c.time_ms).label("last_ms"))
         .where(*_range(chunk)).group_by(o.c.clinic_id, o.c.patient_id, day, o.c.metric, o.c.kind))
    return [{**dict(r), "patient_key": r.patient_id} for r in conn.execute(q).mappings()]


def _highlights(conn: sa.Connection, chunk: Chunk) -> list[dict[str, Any]]:
    o = observations
    q = (sa.select(o.c.gateway_id, o.c.seq, o.c.clinic_id, o.c.patient_id.label("patient_key"), o.c.kind, o.c.metric,
                   o.c.value, o.c.unit, o.c.time_ms, o.c.device_id, o.c.extra)
         .where(*_range(chunk), o.c.kind.in_(HIGHLIGHT_KINDS)))
    return [dict(r) for r in conn.execute(q).mappings()]


def _least(column: Any, new: Any) -> Any:
    return sa.case((new.is_(None), column), (column.is_(None), new), (new < column, new), else_=column)


def _greatest(column: Any, new: Any) -> Any:
    return sa.case((new.is_(None), column), (column.is_(None), new), (new > column, new), else_=column)


def _add_sums(conn: sa.Connection, sums: list[dict[str, Any]]) -> None:
    insert = store.dialect_insert(conn)
    r = observation_rollups
    stmt = insert(r)
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[r.c.clinic_id, r.c.patient_key, r.c.day_ms, r.c.metric, r.c.kind],
        set_={"count": r.c.count + new.count, "value_count": r.c.value_count + new.value_count,
              "value_min": _least(r.c.value_min, new.value_min), "value_max": _greatest(r.c.value_max, new.value_max),
              "value_sum": sa.case((new.value_sum.is_(None), r.c.value_sum), (r.c.value_sum.is_(None), new.value_sum),
                                   else_=r.c.value_sum + new.value_sum),
              "first_ms": _least(r.c.first_ms, new.first_ms), "last_ms": _greatest(r.c.last_ms, new.last_ms),
              "unit": sa.func.coalesce(new.unit, r.c.unit)})
    columns = [c.name for c in r.columns]
    conn.execute(stmt, [{c: s[c] for c in columns} for s in sums])


def _advance(conn: sa.Connection, chunk: Chunk, at: int) -> bool:
    """Move the gateway's watermark from chunk.start to chunk.end, unless another worker moved it first."""
    p = rollup_progress
    if chunk.start == 1:
        first = (store.dialect_insert(conn)(p)
                 .values(gateway_id=chunk.gateway_id, rolled_below=chunk.end, updated_ms=at)
                 .on_conflict_do_nothing(index_elements=["gateway_id"]).returning(p.c.gateway_id))
        if conn.execute(first).first() is not None:
            return True
    moved = conn.execute(p.update().where(p.c.gateway_id == chunk.gateway_id, p.c.rolled_below == chunk.start)
                         .values(rolled_below=chunk.end, updated_ms=at))
    return moved.rowcount == 1


def roll_chunk(engine: sa.Engine, chunk: Chunk, stats: RollupStats) -> None:
    """Sum one range in one transaction (or nothing, if another worker did it)."""
    with engine.connect() as conn:
        sums, notable = _sums(conn, chunk), _highlights(conn, chunk)
    at = now_ms()
    with engine.begin() as conn:
        if not _advance(conn, chunk, at):
            stats.conflicts += 1
            conn.rollback()
            return
        if sums:
            _add_sums(conn, sums)
        if notable:
            conn.execute(store.dialect_insert(conn)(observation_highlights)
                         .on_conflict_do_nothing(index_elements=["gateway_id", "seq"]), notable)
        for clinic_id, mrn in sorted({(s["clinic_id"], s["patient_key"]) for s in sums}):
            pid, created = records.provisional_patient(conn, clinic_id, mrn, now=at)
            if created:
                stats.provisional_patients += 1
                audit.record(conn, "system", "patient.register", "patient", pid, clinic_id=clinic_id,
                             detail={"origin": "device", "mrn": mrn, "gateway_id": chunk.gateway_id})
    stats.rows += sum(int(s["count"]) for s in sums)
    stats.chunks += 1


def roll_all(engine: sa.Engine, chunk_rows: int, stats: RollupStats, *, max_chunks: int = 1000) -> int:
    """Sum everything due (at most `max_chunks` ranges); returns how many ranges were summed."""
    done = 0
    while done < max_chunks:
        with engine.connect() as conn:
            chunks = due_chunks(conn, chunk_rows)
        if not chunks:
            break
        for chunk in chunks:
            roll_chunk(engine, chunk, stats)
            done += 1
    return done


ROLLUP_STATS: web.AppKey[RollupStats] = web.AppKey("rollup_stats", RollupStats)


async def background(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the rollup loop, from start to shutdown."""
    stats = app[ROLLUP_STATS] = RollupStats()
    task = asyncio.create_task(_loop(app, stats), name="hq-records-rollup")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _loop(app: web.Application, stats: RollupStats) -> None:
    section = app[CONFIG].records
    while True:
        try:
            await asyncio.to_thread(roll_all, app[ENGINE], section.rollup_chunk_rows, stats, max_chunks=50)
        except sa.exc.SQLAlchemyError as exc:
            # The database is away or busy: the watermark did not move, so nothing is lost; try again later.
            stats.failures += 1
            log.error("observation rollup failed, retrying in %.0f s: %s", section.rollup_interval_s, exc)
        await asyncio.sleep(section.rollup_interval_s)
