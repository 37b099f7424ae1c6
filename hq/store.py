"""Writes to HQ's database: one ingest transaction per `CommitPlan`, and marking silent gateways offline.

Synchronous SQLAlchemy Core, called from a worker thread (`asyncio.to_thread`); reads are in `hq.queries`.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from gateway import wire
from hq import fleet
from hq.commit_plan import CommitPlan
from hq.fleet import GatewayUpdate
from hq.models import clinics, gateways, observations


@dataclass(slots=True)
class CommitResult:
    inserted: int
    duplicates: int
    committed_seq: dict[str, int] = field(default_factory=dict)
    gateway_rows: list[dict[str, Any]] = field(default_factory=list)
    new_rows: list[dict[str, Any]] = field(default_factory=list)


Insert = Callable[[sa.Table], Any]


def dialect_insert(engine: sa.Engine | sa.Connection) -> Insert:
    name = engine.dialect.name
    if name == "sqlite":
        return sqlite.insert
    if name == "postgresql":
        return postgresql.insert
    raise ValueError(f"database dialect {name!r} is not supported")


def write_plan(engine: sa.Engine, plan: CommitPlan) -> CommitResult:
    """Commit the plan in ONE transaction; redelivered rows are ignored by the (gateway_id, seq) key."""
    insert = dialect_insert(engine)
    with engine.begin() as conn:
        if plan.clinics:
            conn.execute(insert(clinics).on_conflict_do_nothing(index_elements=["id"]),
                         [{"id": c, "name": c} for c in sorted(plan.clinics)])
        for update in plan.gateways.values():
            _upsert_gateway(conn, insert, update, plan.hq_ms)
        if conn.dialect.name == "postgresql":
            new_rows = _insert_postgresql(conn, plan)
        else:
            new_rows = _insert_executemany(conn, insert, plan)
        rows = conn.execute(sa.select(gateways).where(gateways.c.id.in_(list(plan.gateways)))).mappings().all()
    gateway_rows = [dict(r) for r in rows]
    return CommitResult(
        inserted=len(new_rows),
        duplicates=plan.records - len(new_rows),
        committed_seq={r["id"]: int(r["committed_seq"]) for r in gateway_rows},
        gateway_rows=gateway_rows,
        new_rows=new_rows,
    )


OBSERVATION_COLUMNS = ("gateway_id", "seq", "clinic_id", "kind", "metric", "value", "unit", "time_ms", "recv_ms",
                       "hq_ms", "patient_id", "device_id", "extra")

_PG_STAGING = """CREATE TEMP TABLE IF NOT EXISTS observations_in (
    gateway_id text, seq bigint, clinic_id text, kind text, metric text, value float8, unit text,
    time_ms bigint, recv_ms bigint, hq_ms bigint, patient_id text, device_id text, extra json
) ON COMMIT DELETE ROWS"""
_PG_MERGE = (
    f"INSERT INTO observations ({', '.join(OBSERVATION_COLUMNS)}) "
    f"SELECT {', '.join(OBSERVATION_COLUMNS)} FROM observations_in "
    "ON CONFLICT (gateway_id, seq) DO NOTHING RETURNING gateway_id, seq"
)


def _insert_executemany(conn: sa.Connection, insert: Insert, plan: CommitPlan) -> list[dict[str, Any]]:
    """The dialect insert, compiled once, executed with the DB-API's executemany on plain tuples.

    SQLAlchemy's per-row parameter processing cost 40 % of the ingest time on SQLite; the rows are already
    plain values (extra pre-serialised to JSON text), so they go to the driver as they are.
    """
    if not plan.rows:
        return []
    stmt = insert(observations).on_conflict_do_nothing(index_elements=["gateway_id", "seq"])
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(OBSERVATION_COLUMNS))
    order = compiled.positiontup or list(OBSERVATION_COLUMNS)
    extra_at = order.index("extra")
    pick = operator.itemgetter(*order)
    params = []
    for row in plan.rows:
        values = list(pick(row))
        if values[extra_at] is not None:
            values[extra_at] = json.dumps(values[extra_at], separators=(",", ":"))
        params.append(tuple(values))
    result = conn.exec_driver_sql(str(compiled), params)
    if result.rowcount == len(plan.rows):
        return plan.rows
    return _rows_inserted_now(conn, plan)


def _insert_postgresql(conn: sa.Connection, plan: CommitPlan) -> list[dict[str, Any]]:
    """COPY into a per-connection staging table, then one INSERT ... SELECT ... ON CONFLICT DO NOTHING.

    Measured 2-3x faster than executemany of the dialect insert, and RETURNING says exactly which rows
    were new (psycopg reports no rowcount for executemany).
    """
    if not plan.rows:
        return []
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cur:
        cur.execute(_PG_STAGING)
        with cur.copy(f"COPY observations_in ({', '.join(OBSERVATION_COLUMNS)}) FROM STDIN") as copy:
            for r in plan.rows:
                extra = r["extra"]
                copy.write_row((r["gateway_id"], r["seq"], r["clinic_id"], r["kind"], r["metric"], r["value"],
                                r["unit"], r["time_ms"], r["recv_ms"], r["hq_ms"], r["patient_id"], r["device_id"],
                                None if extra is None else json.dumps(extra, separators=(",", ":"))))
        cur.execute(_PG_MERGE)
        fresh = {(gw, seq) for gw, seq in cur.fetchall()}
    if len(fresh) == len(plan.rows):
        return plan.rows
    return [r for r in plan.rows if (r["gateway_id"], r["seq"]) in fresh]


def _rows_inserted_now(conn: sa.Connection, plan: CommitPlan) -> list[dict[str, Any]]:
    """Some rows were already present: keep those this transaction wrote (they carry its hq_ms)."""
    fresh: set[tuple[str, int]] = set()
    for gw, ranges in plan.acks.items():
        for _lane, first, last in ranges:
            q = sa.select(observations.c.seq).where(
                observations.c.gateway_id == gw, observations.c.seq.between(first, last),
                observations.c.hq_ms == plan.hq_ms,
            )
            fresh.update((gw, seq) for seq in conn.execute(q).scalars())
    return [r for r in plan.rows if (r["gateway_id"], r["seq"]) in fresh]


def _grow(column: sa.Column[Any], value: int) -> Any:
    """SQL for max(column, value) that also replaces NULL, in both dialects."""
    return sa.case((sa.or_(column.is_(None), column < value), value), else_=column)


def _upsert_gateway(conn: sa.Connection, insert: Insert, u: GatewayUpdate, hq_ms: int) -> None:
    # Insert-if-absent then update: several HQ workers may see a new gateway at once.
    conn.execute(insert(gateways).on_conflict_do_nothing(index_elements=["id"]), [{
        "id": u.gateway_id, "clinic_id": u.clinic_id, "state": str(u.state or wire.GatewayState.OFFLINE),
        "first_seen_ms": hq_ms, "last_contact_ms": u.contact_ms, "software": u.software or "",
        "backlog_total": 0, "committed_seq": 0, "complete_below": 0,
    }])
    values: dict[str, Any] = {"clinic_id": u.clinic_id}
    if u.state is not None:
        values["state"] = str(u.state)
    if u.contact_ms is not None:
        values["last_contact_ms"] = _grow(gateways.c.last_contact_ms, u.contact_ms)
    if u.software is not None:
        values["software"] = u.software
    if u.started_ms is not None:
        values["started_ms"] = u.started_ms
    if u.backlog is not None:
        values["backlog_json"] = u.backlog
        values["backlog_total"] = u.backlog_total
    if u.devices is not None:
        values["devices_json"] = u.devices
    if u.drain_rate_per_s is not None:
        values["drain_rate_per_s"] = u.drain_rate_per_s
    if u.committed_seq is not None:
        values["committed_seq"] = _grow(gateways.c.committed_seq, u.committed_seq)
    if u.complete_below is not None:
        values["complete_below"] = _grow(gateways.c.complete_below, u.complete_below)
    conn.execute(gateways.update().where(gateways.c.id == u.gateway_id).values(values))


def mark_silent_offline(engine: sa.Engine, *, now_ms: int, offline_after_ms: int) -> list[dict[str, Any]]:
    """Set online gateways not heard from for `offline_after_ms` offline; return their updated rows."""
    with engine.begin() as conn:
        candidates = conn.execute(
            sa.select(gateways.c.id, gateways.c.state, gateways.c.last_contact_ms)
            .where(gateways.c.state == str(wire.GatewayState.ONLINE))
        ).all()
        silent = [gid for gid, state, last in candidates
                  if fleet.is_silent(state, last, now_ms=now_ms, offline_after_ms=offline_after_ms)]
        if not silent:
            return []
        conn.execute(gateways.update().where(gateways.c.id.in_(silent), gateways.c.state == "online")
                     .values(state=str(wire.GatewayState.OFFLINE)))
        rows = conn.execute(sa.select(gateways).where(gateways.c.id.in_(silent))).mappings().all()
    return [dict(r) for r in rows]
