"""`hq.scheduling.available_now` against SQLite and PostgreSQL: published hours in the expert's own zone,
leave and clinic duty, booked appointments, many experts at once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from hq import scheduling, slots
from hq.models import appointments, availability_exceptions, availability_rules
from tests.support import directory, schedule_rows
from tests.support.schedule_rows import at

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


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


# Zones with DST at 02:00 (Berlin) and at midnight (Santiago), a half-hour DST (Lord Howe), +05:45 (Kathmandu)
# and +13:45/+12:45 (Chatham): the SQL must read every one of them the way `hq.slots` does.
ZONES = ("Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Chatham")
RULES = (  # (weekday, start, end, valid_from, valid_until): days, nights, whole days, windows inside DST hours
    [(0, "09:00", "12:00", None, None), (6, "22:00", "06:00", None, None)],
    [(d, "00:00", "24:00", None, None) for d in range(7)],
    [(d, "01:30", "02:45", None, None) for d in range(7)],
    [(d, "02:30", "03:15", None, None) for d in range(7)],
    [(d, "23:00", "00:00", None, None) for d in range(7)],
    [(d, "23:30", "00:30", None, None) for d in range(7)],
    [(d, "00:00", "01:00", None, None) for d in range(7)],
    [(d, "08:00", "20:00", date(2026, 3, 29), date(2026, 3, 29)) for d in range(7)],
    [(d, "20:00", "08:00", date(2026, 10, 25), None) for d in range(7)],
)


def transitions(tz: ZoneInfo, year: int) -> list[int]:
    """The instants `tz` changes its UTC offset in `year` (to the minute)."""
    found, step = [], 3_600_000
    t = int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp() * 1000)
    offset = datetime.fromtimestamp(t / 1000, tz).utcoffset()
    while t < end:
        nxt = datetime.fromtimestamp((t + step) / 1000, tz).utcoffset()
        if nxt != offset:
            lo, hi = t, t + step
            while hi - lo > 60_000:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if datetime.fromtimestamp(mid / 1000, tz).utcoffset() == offset else (lo, mid)
            found.append(hi)
            offset = nxt
        t += step
    return found


def test_available_now_reads_hours_exactly_as_the_slot_rules_do_across_dst(engine: sa.Engine) -> None:
    made: dict[int, slots.Calendar] = {}
    with engine.begin() as conn:
        dept = directory.add_department(conn, "general")
        for zone_name in ZONES:
            for i, rules in enumerate(RULES):
                expert_id = directory.add_expert(conn, f"{zone_name} {i}", dept, time_zone=zone_name)
                for weekday, start, end, valid_from, valid_until in rules:
                    conn.execute(availability_rules.insert().values(
                        expert_id=expert_id, weekday=weekday, start_time=start, end_time=end, slot_minutes=15,
                        valid_from=valid_from, valid_until=valid_until))
                made[expert_id] = slots.Calendar(expert_id, ZoneInfo(zone_name), tuple(
                    slots.make_rule(*rule[:3], 15, *rule[3:]) for rule in rules))
    instants = set()
    for zone_name in ZONES:
        for change in transitions(ZoneInfo(zone_name), 2026):
            for minutes in (-95, -61, -60, -31, -30, -16, -15, -1, 0, 1, 14, 15, 29, 30, 31, 44, 45, 59, 60, 61, 75,
                            90, 119, 120, 121):
                instants.add(change + minutes * 60_000)
    for zone_name in ZONES:  # local midnights and the minutes around them, on an ordinary Monday and Sunday
        for day in (5, 11):
            midnight = at(ZoneInfo(zone_name), 2026, 1, day)
            instants.update(midnight + m * 60_000 for m in (-61, -31, -30, -1, 0, 1, 29, 30, 31, 59, 60, 61))
    mismatches = []
    with engine.connect() as conn:
        for instant in sorted(instants):
            expected = {e for e, cal in made.items() if slots.available_at(cal, instant)}
            got = scheduling.available_now(conn, list(made), instant)
            if got != expected:
                mismatches.append((datetime.fromtimestamp(instant / 1000, UTC).isoformat(),
                                   sorted(got - expected), sorted(expected - got)))
    assert len(instants) > 250
    assert mismatches == [], mismatches[:5]


def test_leave_and_bookings_count_from_their_start_to_just_before_their_end(engine: sa.Engine) -> None:
    noon = at(BERLIN, 2026, 1, 5, 12, 0)
    with engine.begin() as conn:
        directory.add_clinic(conn, "clinic-a")
        dept = directory.add_department(conn, "cardiology")
        ids = []
        for name in ("Leave from noon", "Leave until noon", "Booked from noon", "Booked until noon", "Old leave"):
            made = expert(conn, name, dept, "Europe/Berlin")
            schedule_rows.every_day(conn, made, "08:00", "18:00", 30)
            ids.append(made)
        leave_from, leave_until, booked_from, booked_until, old = ids
        for expert_id, starts, ends in ((leave_from, noon, noon + 3_600_000), (leave_until, noon - 3_600_000, noon),
                                        (old, noon - 30 * 86_400_000, noon - 29 * 86_400_000)):
            conn.execute(availability_exceptions.insert().values(expert_id=expert_id, starts_ms=starts, ends_ms=ends,
                                                                 kind="leave", created_ms=0))
        appointment(conn, booked_from, dept, noon, noon + 1_800_000, "booked")
        appointment(conn, booked_until, dept, noon - 1_800_000, noon, "booked")
    with engine.connect() as conn:
        assert scheduling.available_now(conn, ids, noon) == {leave_until, booked_until, old}
        assert scheduling.available_now(conn, ids, noon - 1) == {leave_from, booked_from, old}
        assert scheduling.available_now(conn, iter(ids), noon - 1) == {leave_from, booked_from, old}  # any iterable


def test_an_expert_in_a_zone_this_machine_does_not_know_is_unavailable(engine: sa.Engine,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    monday_10 = at(BERLIN, 2026, 1, 5, 10, 0)
    with engine.begin() as conn:
        dept = directory.add_department(conn, "cardiology")
        known = expert(conn, "Known zone", dept, "Europe/Berlin")
        unknown = expert(conn, "Unknown zone", dept, "Mars/Olympus_Mons")
        for made in (known, unknown):
            schedule_rows.every_day(conn, made, "00:00", "24:00", 30)
    with engine.connect() as conn, caplog.at_level("WARNING", logger="hq.scheduling"):
        assert scheduling.available_now(conn, [known, unknown], monday_10) == {known}
        assert scheduling.available_now(conn, [unknown], monday_10) == set()
    assert "Mars/Olympus_Mons" in caplog.text
