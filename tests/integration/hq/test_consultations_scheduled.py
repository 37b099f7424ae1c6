"""`hq.consultations.create_scheduled`, the consultation row behind a routine booking, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from hq import consultations, db, records
from hq.models import consultations as consultations_table
from tests.support import directory
from tests.support.consult_experts import add_expert_with_account


def test_a_booking_makes_a_scheduled_routine_consultation_with_its_expert(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            clinic = directory.add_clinic(conn, "clinic-a")
            dept = directory.add_department(conn, "cardiology")
            expert_id, user_id = add_expert_with_account(conn, "wang", dept)
            patient_id = records.register_patient(conn, clinic, "MRN-1", name="Test Patient")
            cid, public_id = consultations.create_scheduled(
                conn, clinic_id=clinic, patient_id=patient_id, expert_id=expert_id, department_id=dept,
                requested_by_user_id=user_id, start_ms=1_900_000_000_000, now=1_800_000_000_000)
            other_id, other_public = consultations.create_scheduled(
                conn, clinic_id=clinic, patient_id=patient_id, expert_id=expert_id, department_id=dept,
                requested_by_user_id=None, start_ms=1_900_000_600_000)
        with engine.connect() as conn:
            row = conn.execute(sa.select(consultations_table).where(consultations_table.c.id == cid)).mappings().one()
        assert (row["public_id"], row["kind"], row["status"]) == (public_id, "routine", "scheduled")
        assert (row["expert_id"], row["requested_expert_id"], row["department_id"]) == (expert_id, expert_id, dept)
        assert (row["requested_ms"], row["received_ms"], row["scheduled_ms"]) == (
            1_800_000_000_000, 1_800_000_000_000, 1_900_000_000_000)
        assert row["patient_id"] == patient_id and row["clinic_id"] == "clinic-a"
        assert other_id != cid and other_public != public_id and len(public_id) == 32
    finally:
        engine.dispose()
