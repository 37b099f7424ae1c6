"""Reads from HQ's database for the API and the console: synchronous SQLAlchemy Core, run in a thread.

Returns plain dicts of column values; `hq.representations` turns them into JSON. Writes are in `hq.store`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hq.models import clinics, gateways, observations
from hq.query_params import ObservationQuery, Order


def list_gateways(engine: sa.Engine, clinic_id: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(gateways).order_by(gateways.c.clinic_id, gateways.c.id)
    if clinic_id is not None:
        q = q.where(gateways.c.clinic_id == clinic_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def list_clinics(engine: sa.Engine) -> list[dict[str, Any]]:
    online = sa.func.sum(sa.case((gateways.c.state == "online", 1), else_=0))
    q = (
        sa.select(clinics.c.id, clinics.c.name, sa.func.count(gateways.c.id).label("gateways"),
                  online.label("gateways_online"))
        .select_from(clinics.outerjoin(gateways, gateways.c.clinic_id == clinics.c.id))
        .group_by(clinics.c.id, clinics.c.name)
        .order_by(clinics.c.id)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings()]


def find_observations(engine: sa.Engine, query: ObservationQuery) -> list[dict[str, Any]]:
    o = observations
    q = sa.select(o)
    for column, value in ((o.c.gateway_id, query.gateway_id), (o.c.clinic_id, query.clinic_id),
                          (o.c.patient_id, query.patient_id), (o.c.metric, query.metric), (o.c.kind, query.kind)):
        if value is not None:
            q = q.where(column == value)
    if query.since_ms is not None:
        q = q.where(o.c.time_ms >= query.since_ms)
    if query.until_ms is not None:
        q = q.where(o.c.time_ms < query.until_ms)
    if query.order is Order.ASC:
        q = q.order_by(o.c.time_ms.asc(), o.c.gateway_id.asc(), o.c.seq.asc())
    else:
        q = q.order_by(o.c.time_ms.desc(), o.c.gateway_id.desc(), o.c.seq.desc())
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(q.limit(query.limit)).mappings()]


def latest_vitals(engine: sa.Engine, patient_id: str, clinic_id: str | None = None) -> list[dict[str, Any]]:
    """The newest observation of each metric for a patient (numeric readings, not alarms or waveforms);
    with `clinic_id`, only readings taken at that clinic."""
    o = observations
    where = [o.c.patient_id == patient_id, o.c.kind == "observation"]
    if clinic_id is not None:
        where.append(o.c.clinic_id == clinic_id)
    newest = (
        sa.select(o.c.metric, sa.func.max(o.c.time_ms).label("time_ms"))
        .where(*where)
        .group_by(o.c.metric)
        .subquery()
    )
    q = (
        sa.select(o)
        .join(newest, sa.and_(o.c.metric == newest.c.metric, o.c.time_ms == newest.c.time_ms))
        .where(*where)
        .order_by(o.c.metric, o.c.hq_ms.desc(), o.c.seq.desc())
    )
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        latest.setdefault(r["metric"], dict(r))
    return list(latest.values())


def recent_patients(engine: sa.Engine, since_ms: int) -> list[dict[str, Any]]:
    """(clinic_id, patient_id, last_ms) of patients with readings since `since_ms`, newest first.

    Filtered per gateway so the (gateway_id, time_ms) index answers it without a table scan.
    """
    o = observations
    with engine.connect() as conn:
        gateway_ids = list(conn.execute(sa.select(gateways.c.id)).scalars())
        if not gateway_ids:
            return []
        q = (
            sa.select(o.c.clinic_id, o.c.patient_id, sa.func.max(o.c.time_ms).label("last_ms"))
            .where(o.c.gateway_id.in_(gateway_ids), o.c.time_ms >= since_ms, o.c.patient_id.is_not(None))
            .group_by(o.c.clinic_id, o.c.patient_id)
            .order_by(sa.desc("last_ms"))
        )
        return [dict(r) for r in conn.execute(q).mappings()]
