"""Merging duplicate patients on SQLite and PostgreSQL: everything of B moves to A and nothing is lost or doubled
(record numbers, visits, imaging, consultations, appointments, and the readings that follow the record
numbers); B points at A; what moved is kept so that the merge can be undone exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from hq import observation_rollup, patient_merge, records
from hq.auth import Actor, Role
from hq.models import (
    appointments,
    consultations,
    experts,
    imaging,
    patient_duplicates,
    patient_identifiers,
    patient_merges,
    patients,
    visits,
)
from hq.observation_rollup import RollupStats
from hq.patient_merge import MergeError
from hq.patient_timeline import snapshot
from tests.integration.hq.records_support import (
    T0,
    add_consultation,
    add_expert,
    add_gateway,
    add_readings,
    schema_engine,
)

SPO2 = "MDC_PULS_OXIM_SAT_O2"
TABLES = (patient_identifiers, visits, imaging, consultations, appointments)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    with schema_engine(db_url) as e:
        yield e


def add_imaging(conn: sa.Connection, patient_id: int, sop: str) -> None:
    conn.execute(imaging.insert().values(patient_id=patient_id, sha256=sop.ljust(64, "0"), size_bytes=10,
                                         storage_path="x", sop_instance_uid=sop, uploaded_ms=T0))


def add_appointment(conn: sa.Connection, patient_id: int, expert_id: int) -> None:
    department = conn.execute(sa.select(experts.c.department_id).where(experts.c.id == expert_id)).scalar_one()
    conn.execute(appointments.insert().values(expert_id=expert_id, department_id=department, start_ms=T0,
                                              end_ms=T0 + 900_000, clinic_id="clinic-b", patient_id=patient_id,
                                              status="booked", created_ms=T0, updated_ms=T0))


def seed(engine: sa.Engine) -> tuple[int, int]:
    with engine.begin() as conn:
        a = records.register_patient(conn, "clinic-a", "A-1", name="Wang Fang", birth_date="1970-04-04", now=T0)
        b = records.register_patient(conn, "clinic-b", "B-1", name="Wang Fang", national_id="W123", sex="F",
                                     phone="555", now=T0)
        records.note_duplicate(conn, a, b, "same name", source="register", now=T0)
        records.record_visit(conn, a, "clinic-a", started_ms=T0 + 1)
        records.record_visit(conn, b, "clinic-b", started_ms=T0 + 2)
        records.record_visit(conn, b, "clinic-b", started_ms=T0 + 3)
        add_imaging(conn, b, "1.2.3.4")
        dr = add_expert(conn)
        add_consultation(conn, b, clinic_id="clinic-b", expert_id=dr)
        add_appointment(conn, b, dr)
        add_gateway(conn, "gw-a", "clinic-a")
        add_gateway(conn, "gw-b", "clinic-b")
        add_readings(conn, "gw-a", "clinic-a", "A-1", [(s, "observation", SPO2, 95.0, T0 + s) for s in range(1, 11)])
        add_readings(conn, "gw-b", "clinic-b", "B-1", [(s, "observation", SPO2, 90.0, T0 + s) for s in range(1, 6)])
    observation_rollup.roll_all(engine, chunk_rows=4, stats=RollupStats())  # some summed, the last few in the tail
    return a, b


def owners(engine: sa.Engine) -> dict[str, list[tuple[int, int]]]:
    """(row id, patient id) of every row of every table that moves."""
    with engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(sa.select(t.c.id, t.c.patient_id).order_by(t.c.id))]
                for t in TABLES}


def readings(engine: sa.Engine, pid: int) -> int:
    with snapshot(engine) as conn:
        doc: dict[str, Any] = records.timeline(conn, pid, since_ms=T0 - 1, until_ms=T0 + 86_400_000).to_json()
    return sum(m["count"] for d in doc["vitals_by_day"] for m in d["metrics"])


def test_merge_moves_everything_once_and_undo_restores_it(engine: sa.Engine) -> None:
    a, b = seed(engine)
    before = owners(engine)
    assert (readings(engine, a), readings(engine, b)) == (10, 5)
    with engine.begin() as conn:
        result = patient_merge.merge(conn, a, b, by_user_id=None, reason="same person", now=T0 + 100)
    after = owners(engine)
    for table in TABLES:
        # the same rows, none lost or doubled; B's are A's now
        assert [row_id for row_id, _ in after[table.name]] == [row_id for row_id, _ in before[table.name]]
        assert {pid for _, pid in after[table.name]} <= {a}
    assert result.counts() == {"patient_identifiers": 1, "visits": 2, "imaging": 1, "consultations": 1,
                               "appointments": 1}
    assert readings(engine, a) == 15  # B's readings followed its record number
    assert readings(engine, b) == 15  # B's id now shows A's timeline
    with engine.connect() as conn:
        rows = {r["id"]: r for r in conn.execute(sa.select(patients)).mappings()}
        assert rows[b]["merged_into_id"] == a and rows[a]["merged_into_id"] is None
        # A keeps its own facts and takes B's where it had none; the national id moved
        assert (rows[a]["birth_date"].isoformat(), rows[a]["sex"], rows[a]["phone"], rows[a]["national_id"]) == (
            "1970-04-04", "female", "555", "W123")
        assert rows[b]["national_id"] is None
        assert records.patient_for_mrn(conn, "clinic-b", "B-1") == a
        assert records.resolve(conn, b) == a
        staff_b = Actor(9, "n", "N", Role.CLINIC_STAFF, clinic_id="clinic-b")
        assert records.may_see_patient(conn, staff_b, a) and records.may_see_patient(conn, staff_b, b)
        assert conn.execute(sa.select(patient_duplicates.c.resolution)).scalar() == "merged"
        stored = conn.execute(sa.select(patient_merges.c.moved)).scalar()
        assert stored["rows"]["visits"] == [row_id for row_id, pid in before["visits"] if pid == b]

    with engine.begin() as conn:
        patient_merge.undo(conn, result.merge_id, by_user_id=None, now=T0 + 200)
    assert owners(engine) == before
    assert (readings(engine, a), readings(engine, b)) == (10, 5)
    with engine.connect() as conn:
        rows = {r["id"]: r for r in conn.execute(sa.select(patients)).mappings()}
        assert rows[b]["merged_into_id"] is None and rows[b]["national_id"] == "W123"
        assert (rows[a]["national_id"], rows[a]["sex"], rows[a]["phone"]) == (None, None, None)
        assert conn.execute(sa.select(patient_merges.c.undone_ms)).scalar() == T0 + 200
        assert conn.execute(sa.select(patient_duplicates.c.resolved_ms)).scalar() is None  # a candidate again
    with pytest.raises(MergeError, match="already undone"), engine.begin() as conn:
        patient_merge.undo(conn, result.merge_id, by_user_id=None, now=T0 + 300)


def test_what_is_added_after_a_merge_stays_with_the_survivor_on_undo(engine: sa.Engine) -> None:
    a, b = seed(engine)
    with engine.begin() as conn:
        result = patient_merge.merge(conn, a, b, by_user_id=None, reason=None, now=T0 + 100)
        later, _ = records.record_visit(conn, a, "clinic-b", started_ms=T0 + 150)
        patient_merge.undo(conn, result.merge_id, by_user_id=None, now=T0 + 200)
        assert conn.execute(sa.select(visits.c.patient_id).where(visits.c.id == later)).scalar() == a


def test_merges_that_cannot_be_done_say_why(engine: sa.Engine) -> None:
    a, b = seed(engine)
    with engine.begin() as conn:
        c = records.register_patient(conn, "clinic-a", "A-2", name="Other", national_id="OTHER", now=T0)
        with pytest.raises(MergeError, match="into itself"):
            patient_merge.merge(conn, a, a, by_user_id=None, reason=None, now=T0)
        with pytest.raises(MergeError, match="different national ids"):
            patient_merge.merge(conn, c, b, by_user_id=None, reason=None, now=T0)
        with pytest.raises(MergeError, match="no patient 424242"):
            patient_merge.merge(conn, a, 424242, by_user_id=None, reason=None, now=T0)
        patient_merge.merge(conn, a, b, by_user_id=None, reason=None, now=T0)
        with pytest.raises(MergeError, match="already merged into"):
            patient_merge.merge(conn, c, b, by_user_id=None, reason=None, now=T0)
