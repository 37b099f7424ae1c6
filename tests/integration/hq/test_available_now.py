"""`hq.scheduling.available_now` against SQLite and PostgreSQL: published hours in the expert's own zone,
leave and clinic duty, booked appointments, many experts at once; each worked out from the rules and, the same,
from the free windows `hq.presence` precomputed. Then the triggers that make precomputed windows stale when
what they came from changes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from hq import presence, scheduling, slots
from hq.models import appointments, availability_exceptions, availability_rules, expert_presence, experts
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


Ask = Callable[[Iterable[int], int], set[int]]


def covered(engine: sa.Engine, ids: Iterable[int], instant: int) -> tuple[int, int]:
    """(experts among `ids`, of them with precomputed windows covering `instant`)."""
    listed = sorted(set(ids))
    p = expert_presence
    with engine.connect() as conn:
        known = conn.execute(sa.select(sa.func.count()).where(experts.c.id.in_(listed))).scalar_one()
        fresh = conn.execute(sa.select(sa.func.count()).where(
            p.c.expert_id.in_(listed), p.c.from_ms <= instant, p.c.until_ms > instant)).scalar_one()
    return known, fresh


@pytest.fixture(params=["from_rules", "precomputed"])
def ask(request: pytest.FixtureRequest, engine: sa.Engine) -> Ask:
    """`available_now` with no precomputed windows (every expert from their rules), or after `hq.presence`
    refreshed them as of the instant asked about (or earlier: a refresh covers the next hours)."""
    def from_rules(ids: Iterable[int], instant: int) -> set[int]:
        ids = list(ids)
        assert covered(engine, ids, instant)[1] == 0
        with engine.connect() as conn:
            return scheduling.available_now(conn, ids, instant)

    def precomputed(ids: Iterable[int], instant: int) -> set[int]:
        ids = list(ids)
        presence.refresh(engine, instant)
        known, fresh = covered(engine, ids, instant)
        assert fresh == known, "every expert's windows precomputed"
        with engine.connect() as conn:
            return scheduling.available_now(conn, ids, instant)

    return from_rules if request.param == "from_rules" else precomputed


def test_available_now_follows_hours_exceptions_and_bookings(engine: sa.Engine, ask: Ask) -> None:
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
    assert ask(everyone, monday_10) == {hours, on_duty_later, pending, night}
    assert ask(everyone, monday_10 + 3_600_000) == {
        hours, on_leave, booked, pending, night}  # 05:00 in New York, still the night shift
    assert ask(everyone, at(BERLIN, 2026, 1, 5, 12, 0)) == set()  # end excluded
    assert ask([], monday_10) == set()
    # The next Monday the leave is over and the appointment is past.
    week = 7 * 86_400_000
    assert ask(everyone, monday_10 + week) == {hours, on_leave, on_duty_later, booked, pending, night}


def test_available_now_answers_for_thousands_of_experts(engine: sa.Engine, ask: Ask) -> None:
    with engine.begin() as conn:
        dept = directory.add_department(conn, "general")
        ids = []
        for i in range(1200):
            made = expert(conn, f"Expert {i}", dept, "America/New_York")
            if i % 3 == 0:
                schedule_rows.rule(conn, made, 0, "09:00", "17:00", 30)
            ids.append(made)
    found = ask(ids, at(NEW_YORK, 2026, 1, 5, 12, 0))
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


def test_available_now_reads_hours_exactly_as_the_slot_rules_do_across_dst(engine: sa.Engine, ask: Ask) -> None:
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
    for instant in sorted(instants):
        expected = {e for e, cal in made.items() if slots.available_at(cal, instant)}
        got = ask(made, instant)
        if got != expected:
            mismatches.append((datetime.fromtimestamp(instant / 1000, UTC).isoformat(),
                               sorted(got - expected), sorted(expected - got)))
    assert len(instants) > 250
    assert mismatches == [], mismatches[:5]


def test_leave_and_bookings_count_from_their_start_to_just_before_their_end(engine: sa.Engine, ask: Ask) -> None:
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
    assert ask(ids, noon) == {leave_until, booked_until, old}
    assert ask(ids, noon - 1) == {leave_from, booked_from, old}
    assert ask(iter(ids), noon - 1) == {leave_from, booked_from, old}  # any iterable


def test_an_expert_in_a_zone_this_machine_does_not_know_is_unavailable(engine: sa.Engine, ask: Ask,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    monday_10 = at(BERLIN, 2026, 1, 5, 10, 0)
    with engine.begin() as conn:
        dept = directory.add_department(conn, "cardiology")
        known = expert(conn, "Known zone", dept, "Europe/Berlin")
        unknown = expert(conn, "Unknown zone", dept, "Mars/Olympus_Mons")
        for made in (known, unknown):
            schedule_rows.every_day(conn, made, "00:00", "24:00", 30)
    with caplog.at_level("WARNING", logger="hq.scheduling"):
        assert ask([known, unknown], monday_10) == {known}
        assert ask([unknown], monday_10) == set()
    assert "Mars/Olympus_Mons" in caplog.text


# ---- precomputed windows go stale with what they came from -----------------------------------------
def fresh(engine: sa.Engine, expert_id: int, instant: int) -> bool:
    return covered(engine, [expert_id], instant) == (1, 1)


def test_every_change_to_what_windows_come_from_makes_them_stale_in_its_transaction(engine: sa.Engine) -> None:
    monday_10 = at(BERLIN, 2026, 1, 5, 10, 0)
    with engine.begin() as conn:
        directory.add_clinic(conn, "clinic-a")
        dept = directory.add_department(conn, "cardiology")
        ids = {}
        for name in ("leave", "booked", "cancelled", "rules", "zone", "reminded", "untouched"):
            ids[name] = expert(conn, f"Dr {name}", dept, "Europe/Berlin")
            schedule_rows.every_day(conn, ids[name], "08:00", "18:00", 30)
        for name in ("cancelled", "reminded"):
            appointment(conn, ids[name], dept, monday_10 - 600_000, monday_10 + 1_200_000, "booked")
    assert presence.refresh(engine, monday_10) == len(ids)
    everyone = list(ids.values())
    with engine.connect() as conn:
        assert scheduling.available_now(conn, everyone, monday_10) == {
            ids[n] for n in ("leave", "booked", "rules", "zone", "untouched")}
    a = appointments
    changes = {
        "leave": availability_exceptions.insert().values(expert_id=ids["leave"], starts_ms=monday_10 - 60_000,
                                                          ends_ms=monday_10 + 3_600_000, kind="leave", created_ms=0),
        "booked": a.insert().values(expert_id=ids["booked"], department_id=dept, start_ms=monday_10,
                                    end_ms=monday_10 + 1_800_000, clinic_id="clinic-a", status="booked",
                                    created_ms=0, updated_ms=0),
        "cancelled": a.update().where(a.c.expert_id == ids["cancelled"]).values(status="cancelled"),
        "rules": availability_rules.delete().where(availability_rules.c.expert_id == ids["rules"]),
        "zone": experts.update().where(experts.c.id == ids["zone"]).values(time_zone="Asia/Tokyo"),  # 18:00 there
        "reminded": a.update().where(a.c.expert_id == ids["reminded"]).values(reminded_ms=monday_10),
    }
    for name, change in changes.items():
        with engine.begin() as conn:
            conn.execute(change)
            # Inside the changing transaction already: nobody can read the old windows as fresh after it commits.
            assert conn.execute(sa.select(expert_presence.c.until_ms).where(
                expert_presence.c.expert_id == ids[name])).scalar_one() == (0 if name != "reminded" else
                                                                            presence.expires(ids[name], monday_10))
    assert {n for n, i in ids.items() if fresh(engine, i, monday_10)} == {"reminded", "untouched"}
    expected = {ids[n] for n in ("cancelled", "untouched")}
    with engine.connect() as conn:
        assert scheduling.available_now(conn, everyone, monday_10) == expected  # the stale ones from their rules
        assert scheduling.available_now_from_rules(conn, everyone, monday_10) == expected
    assert presence.refresh(engine, monday_10) == 5  # the stale ones, computed again
    assert all(fresh(engine, i, monday_10) for i in everyone)
    with engine.connect() as conn:
        assert scheduling.available_now(conn, everyone, monday_10) == expected


def test_a_refresh_never_marks_fresh_what_changed_while_it_computed(engine: sa.Engine) -> None:
    monday_10 = at(BERLIN, 2026, 1, 5, 10, 0)
    with engine.begin() as conn:
        dept = directory.add_department(conn, "cardiology")
        changed, other = (expert(conn, f"Dr {n}", dept, "Europe/Berlin") for n in ("changed", "other"))
        for made in (changed, other):
            schedule_rows.every_day(conn, made, "08:00", "18:00", 30)
    with engine.begin() as conn:
        presence.add_missing_rows(conn)
    with engine.connect() as conn:
        generations = presence.due(conn, monday_10)
        windows = presence.compute(conn, [i for i, _ in generations], monday_10)
    with engine.begin() as conn:  # committed after the refresher read the data, before it writes
        conn.execute(availability_exceptions.insert().values(expert_id=changed, starts_ms=monday_10 - 60_000,
                                                             ends_ms=monday_10 + 60_000, kind="leave", created_ms=0))
    with engine.begin() as conn:
        assert presence.write(conn, generations, windows, monday_10) == 1
    assert not fresh(engine, changed, monday_10) and fresh(engine, other, monday_10)
    with engine.connect() as conn:
        assert scheduling.available_now(conn, [changed, other], monday_10) == {other}
    stats = presence.PresenceStats()
    assert presence.refresh(engine, monday_10, stats) == 1 and stats.refreshed == 1
    with engine.connect() as conn:
        assert scheduling.available_now(conn, [changed, other], monday_10) == {other}


def test_windows_are_renewed_before_they_run_out_and_new_experts_get_theirs(engine: sa.Engine) -> None:
    monday_10 = at(BERLIN, 2026, 1, 5, 10, 0)
    with engine.begin() as conn:
        dept = directory.add_department(conn, "cardiology")
        first = expert(conn, "Dr First", dept, "Europe/Berlin")
        schedule_rows.every_day(conn, first, "08:00", "18:00", 30)
    assert presence.refresh(engine, monday_10) == 1
    assert presence.refresh(engine, monday_10 + 3_600_000) == 0  # still covered for long enough
    with engine.begin() as conn:
        second = expert(conn, "Dr Second", dept, "Europe/Berlin")
    assert presence.refresh(engine, monday_10 + 3_600_000) == 1  # the new expert only
    # Each expert's windows are renewed once fewer than RENEW_MS of them are left, and not before.
    for made, computed in ((first, monday_10), (second, monday_10 + 3_600_000)):
        renewal = presence.expires(made, computed) - presence.RENEW_MS + 1
        assert presence.HORIZON_MS - presence.SPREAD_MS < presence.expires(made, computed) - computed \
            <= presence.HORIZON_MS
        assert fresh(engine, made, renewal)
        with engine.connect() as conn:
            assert made not in {i for i, _ in presence.due(conn, renewal - 2)}
            assert made in {i for i, _ in presence.due(conn, renewal)}
    later = max(presence.expires(first, monday_10), presence.expires(second, monday_10 + 3_600_000)) \
        - presence.RENEW_MS + 1
    assert presence.refresh(engine, later) == 2
    assert fresh(engine, first, later + presence.RENEW_MS) and fresh(engine, second, later)

