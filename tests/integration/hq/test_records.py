"""Patient records on SQLite and PostgreSQL: registration by national id then (clinic, record number), duplicate
candidates instead of silent merges, records made from device readings and filled in later, and who may see
a patient (clinic staff: their clinic; experts: their consultations and offers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hq import records
from hq.auth import Actor, Role
from hq.models import patient_duplicates, patient_identifiers, patient_search_keys, patients
from hq.patient_matching import PatientDataError
from tests.integration.hq.records_support import T0, add_consultation, add_expert, offer, schema_engine

NID = "11010519900307123X"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    with schema_engine(db_url) as e:
        yield e


def actor(role: Role, **kw: object) -> Actor:
    return Actor(1, "u", "U", role, **kw)  # type: ignore[arg-type]


def test_register_creates_then_finds_by_national_id_at_another_clinic(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = records.register_patient(conn, "clinic-a", "A-1", national_id="110105 19900307 123x", name="张伟",
                                         sex="男", birth_date="1990-03-07", alt_name="Zhang Wei", now=T0)
        again = records.register_patient(conn, "clinic-b", "B-77", national_id=NID, name="Zhang Wei", sex="M",
                                         now=T0)
        assert again == first
        assert records.patient_for_mrn(conn, "clinic-a", "A-1") == first
        assert records.patient_for_mrn(conn, "clinic-b", "B-77") == first
        assert records.patient_for_mrn(conn, "clinic-b", "A-1") is None
        row = records.find_patient(conn, first)
        assert row is not None
        assert (row["national_id"], row["name"], row["sex"], row["birth_date"], row["origin"]) == (
            NID, "张伟", "male", dt.date(1990, 3, 7), "console")
        keys = dict(conn.execute(sa.select(patient_search_keys.c.key, patient_search_keys.c.kind)
                                 .where(patient_search_keys.c.patient_id == first)).all())
        assert keys["张伟"] == "name" and keys["zhangwei"] == "name" and keys["a1"] == "mrn"
        assert keys["b77"] == "mrn" and keys[NID.lower()] == "nid"


def test_the_record_number_finds_the_patient_and_fills_blanks_only(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        pid = records.register_patient(conn, "clinic-a", "A-2", name="Anna Smith", now=T0)
        same = records.register_patient(conn, "clinic-a", "A-2", name="anna  SMITH", national_id="X123",
                                        birth_date="1980-01-02", phone="555", now=T0 + 1)
        assert same == pid
        row = records.find_patient(conn, pid)
        assert row is not None
        assert (row["name"], row["national_id"], row["birth_date"], row["phone"], row["updated_ms"]) == (
            "Anna Smith", "X123", dt.date(1980, 1, 2), "555", T0 + 1)


def test_conflicting_demographics_make_a_duplicate_candidate_never_a_merge(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        anna = records.register_patient(conn, "clinic-a", "A-3", name="Anna Smith", birth_date="1980-01-02", now=T0)
        other = records.register(conn, "clinic-a", "A-3", records.clean_demographics(
            name="Maria Lopez", birth_date="1975-05-05", today=dt.date(2026, 1, 1)), now=T0)
        assert other.patient_id != anna and other.outcome == "created_possible_duplicate"
        # the number stays with the first record; the new one has none, and both are alive
        assert records.patient_for_mrn(conn, "clinic-a", "A-3") == anna
        assert records.identifiers_of(conn, other.patient_id) == []
        dup = conn.execute(sa.select(patient_duplicates)).mappings().one()
        assert (dup["patient_id"], dup["other_id"]) == (anna, other.patient_id)
        assert "birth date 1975-05-05 vs 1980-01-02" in dup["reason"]
        assert conn.execute(sa.select(sa.func.count()).select_from(patients)
                            .where(patients.c.merged_into_id.is_not(None))).scalar() == 0
        # the same registration again finds the record it made, and the conflict is not listed twice
        again = records.register(conn, "clinic-a", "A-3", records.clean_demographics(
            name="maria LOPEZ", birth_date="1975-05-05", phone="555", today=dt.date(2026, 1, 1)), now=T0)
        assert again.patient_id == other.patient_id and again.outcome == "matched_possible_duplicate"
        assert conn.execute(sa.select(sa.func.count()).select_from(patient_duplicates)).scalar() == 1


def test_a_device_patient_id_gets_a_provisional_record_that_a_registration_completes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        pid, created = records.provisional_patient(conn, "clinic-a", "P-N-0001", now=T0)
        assert created and records.provisional_patient(conn, "clinic-a", "P-N-0001") == (pid, False)
        row = records.find_patient(conn, pid)
        assert row is not None and row["origin"] == "device" and "P-N-0001" in row["name"]
        filled = records.register_patient(conn, "clinic-a", "P-N-0001", name="李娜", national_id="N-9",
                                          origin="checkin", now=T0 + 5)
        assert filled == pid
        row = records.find_patient(conn, pid)
        assert row is not None and (row["name"], row["national_id"], row["origin"]) == ("李娜", "N9", "checkin")


def test_registration_errors_name_the_field(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for kwargs, field in ((dict(name="X", sex="q"), "sex"), (dict(name="", family_name=None), "name"),
                              (dict(name="X", birth_date="yesterday"), "birth_date")):
            with pytest.raises(PatientDataError) as exc:
                records.register_patient(conn, "clinic-a", "E-1", **kwargs)  # type: ignore[arg-type]
            assert exc.value.field == field
        with pytest.raises(PatientDataError, match="clinic_id: no clinic 'nowhere'"):
            records.register_patient(conn, "nowhere", "E-1", name="X")
        with pytest.raises(PatientDataError, match="mrn: give a clinic's record number"):
            records.register_patient(conn, None, None, name="X")
        assert conn.execute(sa.select(sa.func.count()).select_from(patient_identifiers)).scalar() == 0


def test_who_may_see_a_patient(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        at_a = records.register_patient(conn, "clinic-a", "A-9", name="Visitor A", now=T0)
        at_b = records.register_patient(conn, "clinic-b", "B-9", name="Visitor B", now=T0)
        records.record_visit(conn, at_b, "clinic-a", started_ms=T0)  # a visit makes clinic A's staff see it too
        only_b = records.register_patient(conn, "clinic-b", "B-10", name="Only B", now=T0)
        dr_li, dr_wu = add_expert(conn, "Dr. Li"), add_expert(conn, "Dr. Wu")
        add_consultation(conn, at_a, expert_id=dr_li)
        offered = add_consultation(conn, only_b, clinic_id="clinic-b", status="dispatching")
        offer(conn, offered, dr_wu)
        declined = add_consultation(conn, at_b, clinic_id="clinic-b", status="dispatching")
        offer(conn, declined, dr_li, outcome="declined")

        def sees(who: Actor) -> set[int]:
            return {p for p in (at_a, at_b, only_b) if records.may_see_patient(conn, who, p)}

        everyone = {at_a, at_b, only_b}
        for role in (Role.ADMIN, Role.COORDINATOR, Role.DEPARTMENT_HEAD):
            assert sees(actor(role)) == everyone
        assert sees(actor(Role.CLINIC_STAFF, clinic_id="clinic-a")) == {at_a, at_b}
        assert sees(actor(Role.CLINIC_STAFF, clinic_id="clinic-b")) == {at_b, only_b}
        assert sees(actor(Role.EXPERT, expert_id=dr_li)) == {at_a}
        assert sees(actor(Role.EXPERT, expert_id=dr_wu)) == {only_b}
        assert sees(actor(Role.EXPERT, expert_id=None)) == set()
        assert not records.may_see_patient(conn, actor(Role.CLINIC_STAFF, clinic_id="clinic-a"), 999_999)
        # the list form of the same rule agrees
        for who in (actor(Role.CLINIC_STAFF, clinic_id="clinic-a"), actor(Role.EXPERT, expert_id=dr_wu)):
            clause = records.visible_clause(who, patients.c.id)
            assert clause is not None
            listed = set(conn.execute(sa.select(patients.c.id).where(clause)).scalars())
            assert listed == sees(who)


def test_timeline_lists_visits_readings_alarms_and_consultations_with_reports(engine: sa.Engine) -> None:
    from hq.patient_timeline import snapshot
    from tests.integration.hq.records_support import add_gateway, add_readings, add_report

    day = 86_400_000
    with engine.begin() as conn:
        pid = records.register_patient(conn, "clinic-a", "A-5", name="Timeline Patient", now=T0)
        assert records.register_patient(conn, "clinic-a", "A-5", name="Timeline Patient", national_id="T5") == pid
        assert records.register_patient(conn, "clinic-b", "B-5", name="Timeline Patient", national_id="T5") == pid
        records.record_visit(conn, pid, "clinic-a", started_ms=T0 + 60_000, reason="chest pain", external_id="c1")
        assert records.record_visit(conn, pid, "clinic-a", started_ms=T0, external_id="c1")[1] is False
        consult = add_consultation(conn, pid, requested_ms=T0 + 120_000)
        add_report(conn, consult)
        add_gateway(conn, "gw-a", "clinic-a")
        add_gateway(conn, "gw-b", "clinic-b")
        add_readings(conn, "gw-a", "clinic-a", "A-5", [(1, "observation", "MDC_PULS_OXIM_SAT_O2", 97.0, T0),
                                                       (2, "observation", "MDC_PULS_OXIM_SAT_O2", 91.0, T0 + 1000),
                                                       (3, "observation", "MDC_PULS_OXIM_SAT_O2", 95.0, T0 + day)])
        add_readings(conn, "gw-a", "clinic-a", "A-5", [(4, "alarm", "MDC_PULS_OXIM_SAT_O2", 85.0, T0 + 2000)],
                     extra={"alarm": {"text": "SpO2 low", "priority": "high", "state": "active"}})
        add_readings(conn, "gw-b", "clinic-b", "B-5", [(1, "observation", "MDC_PULS_OXIM_SAT_O2", 99.0, T0 + 5000)])
        add_readings(conn, "gw-a", "clinic-a", "someone-else", [(5, "observation", "MDC_PULS_OXIM_SAT_O2", 50.0,
                                                                 T0 + 3000)])
    with snapshot(engine) as conn:
        t = records.timeline(conn, pid, since_ms=T0 - day, until_ms=T0 + 2 * day).to_json()
    first, second = sorted(t["vitals_by_day"], key=lambda d: d["day"])
    assert first["day"] == "2025-12-01" and first["alarms"] == 1 and first["gaps"] == 0
    spo2 = first["metrics"][0]
    assert (spo2["metric"], spo2["count"], spo2["min"], spo2["max"], spo2["mean"]) == (
        "MDC_PULS_OXIM_SAT_O2", 3, 91.0, 99.0, round((97 + 91 + 99) / 3, 2))  # both clinics' record numbers
    assert second["day"] == "2025-12-02" and second["metrics"][0]["count"] == 1
    types = [(e["type"], e.get("reason") or e.get("alarm", {}).get("text") or e.get("kind")) for e in t["entries"]]
    assert types == [("consultation", "emergency"), ("visit", "chest pain"), ("alarm", "SpO2 low")]
    assert t["entries"][0]["reports"][0]["version"] == 1
    assert t["recordings"] == "none"  # the consultation has no recording (hq.recordings lists them)
