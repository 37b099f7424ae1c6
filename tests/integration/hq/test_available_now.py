"""`hq.scheduling.available_now` against SQLite and PostgreSQL: published hours in the expert's own zone,
leave and clinic duty, booked appointments, many experts at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from hq import db, scheduling
from hq.models import appointments, availability_exceptions
from tests.support import directory, schedule_rows

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=tz).timestamp() * 1000)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    e = db.create_engine_for(db_url)
    db.upgrade_schema(e)
    yield e
    e.dispose()


def expert(conn: sa.Connection, name: str, department_id: int, time_zone: str) -> int:
    username = "".join(c for c in name.lower() if c.isalnum())
    return schedule_rows.expert(conn, username, department_id, name=name, time_zone=time_zone)[0]


def appointment(conn: sa.Connection, expert_id: int, department_id: int, start_ms: int, end_ms: int,
                status: str) -> None:
    conn.execute(appointments.insert().values(expert_id=expert_id, department_id=department_id, start_ms=start_ms,
                                              end_ms=end_ms, clinic_id="clinic-a", status=status, created_ms=0,
                                              updated_ms=0))


def test_available_now_follows_hours_exceptions_and_bookings(engine: sa.Engine) -> None:
    monday_10 = at(BERLIN, 2026, 1, 5, 10, 0)  # Monday 5 January, 09:00 UTC
    with engine.begin() as conn:
        directory.add_clinic(conn, "clinic-a")
        dept = directory.add_department(conn, "cardiology")
        hours = expert(conn, "In hours", dept, "Europe/Berlin")
        schedule_rows.rule(conn, hours, 0, "09:00", "12:00", 30)
        on_leave = expert(conn, "On leave", dept, "Europe/Berlin")
        schedule_rows.rule(conn, on_leave, 0, "09:00", "12:00", 30)
        conn.execute(availability_exceptions.insert().values(
            expert_id=on_leave, starts_ms=monday_10 - 3_600_000, ends_ms=monday_10 + 60_000, kind="leave",
            created_ms=0))
        on_duty_later = expert(conn, "Clinic duty later", dept, "Europe/Berlin")
        schedule_rows.rule(conn, on_duty_later, 0, "09:00", "12:00", 30)
        conn.execute(availability_exceptions.insert().values(
            expert_id=on_duty_later, starts_ms=monday_10 + 60_000, ends_ms=monday_10 + 7_200_000,
            kind="clinic_duty", created_ms=0))
        booked = expert(conn, "Booked", dept, "Europe/Berlin")
        schedule_rows.rule(conn, booked, 0, "09:00", "12:00", 30)
        appointment(conn, booked, dept, monday_10, monday_10 + 1_800_000, "booked")
        pending = expert(conn, "Extra slot pending", dept, "Europe/Berlin")
        schedule_rows.rule(conn, pending, 0, "09:00", "12:00", 30)
        appointment(conn, pending, dept, monday_10, monday_10 + 1_800_000, "pending_approval")
        appointment(conn, pending, dept, monday_10 - 1_800_000, monday_10 + 1_800_000, "cancelled")
        # 04:00 in New York is 09:00 UTC = 10:00 in Berlin: a night shift from Sunday 22:00 to Monday 06:00.
        night = expert(conn, "Night shift", dept, "America/New_York")
        schedule_rows.rule(conn, night, 6, "22:00", "06:00", 60)
        tokyo = expert(conn, "Asleep in Tokyo", dept, "Asia/Tokyo")
        schedule_rows.rule(conn, tokyo, 0, "09:00", "12:00", 30)
        no_rules = expert(conn, "Never published", dept, "Europe/Berlin")
    everyone = [hours, on_leave, on_duty_later, booked, pending, night, tokyo, no_rules, 999_999]
    with engine.connect() as conn:
        assert scheduling.available_now(conn, everyone, monday_10) == {hours, on_duty_later, pending, night}
        assert scheduling.available_now(conn, everyone, monday_10 + 3_600_000) == {
            hours, on_leave, booked, pending, night}  # 05:00 in New York, still the night shift
        assert scheduling.available_now(conn, everyone, at(BERLIN, 2026, 1, 5, 12, 0)) == set()  # end excluded
        assert scheduling.available_now(conn, [], monday_10) == set()
        # The next Monday the leave is over and the appointment is past.
        week = 7 * 86_400_000
        assert scheduling.available_now(conn, everyone, monday_10 + week) == {
            hours, on_leave, on_duty_later, booked, pending, night}


def test_available_now_answers_for_thousands_of_experts(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        dept = directory.add_department(conn, "general")
        ids = []
        for i in range(1200):
            made = expert(conn, f"Expert {i}", dept, "America/New_York")
            if i % 3 == 0:
                schedule_rows.rule(conn, made, 0, "09:00", "17:00", 30)
            ids.append(made)
    with engine.connect() as conn:
        found = scheduling.available_now(conn, ids, at(NEW_YORK, 2026, 1, 5, 12, 0))
    assert found == {e for i, e in enumerate(ids) if i % 3 == 0}
