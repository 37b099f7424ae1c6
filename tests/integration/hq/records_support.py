"""Rows the records tests need from other domains (clinics, experts, consultations), written as their
schema says; and an engine with HQ's schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from hq import db
from hq.models import clinics, consultations, departments, dispatch_offers, experts, gateways, observations, reports

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z


@contextmanager
def schema_engine(url: str, clinic_ids: tuple[str, ...] = ("clinic-a", "clinic-b")) -> Iterator[sa.Engine]:
    engine = db.create_engine_for(url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            conn.execute(clinics.insert(), [{"id": c, "name": c.replace("-", " ").title()} for c in clinic_ids])
        yield engine
    finally:
        engine.dispose()


def add_expert(conn: sa.Connection, name: str = "Dr. Li") -> int:
    dept = conn.execute(sa.select(departments.c.id).where(departments.c.code == "cardiology")).scalar()
    if dept is None:
        dept = conn.execute(departments.insert().values(code="cardiology", name="Cardiology")).inserted_primary_key[0]
    return int(conn.execute(experts.insert().values(name=name, department_id=dept, languages=["zh"], created_ms=T0,
                                                    profile_updated_ms=T0)).inserted_primary_key[0])


def add_consultation(conn: sa.Connection, patient_id: int | None, *, clinic_id: str = "clinic-a",
                     expert_id: int | None = None, status: str = "accepted", kind: str = "emergency",
                     requested_ms: int = T0) -> int:
    return int(conn.execute(consultations.insert().values(
        public_id=uuid.uuid4().hex, kind=kind, status=status, clinic_id=clinic_id, patient_id=patient_id,
        expert_id=expert_id, requested_ms=requested_ms, received_ms=requested_ms)).inserted_primary_key[0])


def offer(conn: sa.Connection, consultation_id: int, expert_id: int, outcome: str = "pending") -> None:
    conn.execute(dispatch_offers.insert().values(consultation_id=consultation_id, expert_id=expert_id, round=1,
                                                 offered_ms=T0, outcome=outcome))


def add_gateway(conn: sa.Connection, gateway_id: str, clinic_id: str, committed_seq: int = 0) -> None:
    conn.execute(gateways.insert().values(id=gateway_id, clinic_id=clinic_id, state="online", first_seen_ms=T0,
                                          committed_seq=committed_seq, complete_below=committed_seq + 1))


def add_readings(conn: sa.Connection, gateway_id: str, clinic_id: str, mrn: str | None,
                 rows: list[tuple[int, str, str, float | None, int]], extra: dict[str, object] | None = None) -> None:
    """rows: (seq, kind, metric, value, time_ms); the gateway's committed_seq and complete_below follow."""
    conn.execute(observations.insert(), [
        {"gateway_id": gateway_id, "seq": seq, "clinic_id": clinic_id, "kind": kind, "metric": metric, "value": value,
         "unit": "%" if kind == "observation" else None, "time_ms": t, "recv_ms": t, "hq_ms": t, "patient_id": mrn,
         "device_id": "mon-1", "extra": extra if kind != "observation" else None}
        for seq, kind, metric, value, t in rows])
    top = max(r[0] for r in rows)
    conn.execute(gateways.update().where(gateways.c.id == gateway_id).values(
        committed_seq=sa.func.max(gateways.c.committed_seq, top) if conn.dialect.name == "sqlite"
        else sa.func.greatest(gateways.c.committed_seq, top),
        complete_below=sa.func.max(gateways.c.complete_below, top + 1) if conn.dialect.name == "sqlite"
        else sa.func.greatest(gateways.c.complete_below, top + 1)))


def add_report(conn: sa.Connection, consultation_id: int, version: int = 1) -> int:
    return int(conn.execute(reports.insert().values(
        consultation_id=consultation_id, version=version, html="<p>report</p>", pdf=b"%PDF-1.4", sha256="0" * 64,
        created_ms=T0 + 3_600_000)).inserted_primary_key[0])


def add_clinics(url: str, *ids: str) -> None:
    """Clinics a running HQ has not heard of from a gateway yet."""
    engine = db.create_engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(clinics.insert(), [{"id": c, "name": f"Clinic {c[-1].upper()}"} for c in ids])
    finally:
        engine.dispose()
