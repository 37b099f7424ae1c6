"""Slot computation: weekly rules in the expert's zone to UTC slots, DST change days, night shifts, experts
and clinics in different zones, exceptions and bookings, and proposals across experts."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hq import slots
from hq.slots import Calendar, Interval, Proposal, RuleError, SlotRequest, make_rule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
MIN = 60_000
HOUR = 60 * MIN


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, fold: int = 0) -> int:
    """An instant from a wall time, computed independently of the module under test."""
    return int(datetime(y, mo, d, h, mi, tzinfo=tz, fold=fold).timestamp() * 1000)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return at(ZoneInfo("UTC"), y, mo, d, h, mi)


def local(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%a %H:%M %Z")


def cal(*rules: slots.WeeklyRule, tz: ZoneInfo = BERLIN, expert_id: int = 1, **kw: object) -> Calendar:
    return Calendar(expert_id, tz, tuple(rules), **kw)  # type: ignore[arg-type]


def starts(c: Calendar, from_ms: int, to_ms: int) -> list[str]:
    return [local(s.start_ms, c.tz) for s in slots.free_slots(c, from_ms, to_ms)]


# ---- rules ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    ((7, "09:00", "12:00", 30), "weekday 7"),
    ((0, "9:00", "12:00", 30), "expected a time HH:MM"),
    ((0, "09:07", "12:00", 30), "multiple of 5"),
    ((0, "09:00", "24:30", 30), "expected 00:00-23:59 or 24:00"),
    ((0, "24:00", "12:00", 30), "expected 00:00-23:59"),
    ((0, "09:00", "09:00", 30), "the window is empty"),
    ((0, "09:00", "12:00", 7), "slot_minutes 7"),
    ((0, "09:00", "12:00", 0), "slot_minutes 0"),
    ((0, "09:00", "09:20", 30), "shorter than one slot"),
])
def test_bad_rules_are_refused_naming_the_field(args: tuple[int, str, str, int], message: str) -> None:
    with pytest.raises(RuleError, match=message) as caught:
        make_rule(*args, where="rules[2]")
    assert str(caught.value).startswith("rules[2]")


def test_validity_period_must_not_end_before_it_starts() -> None:
    with pytest.raises(RuleError, match="valid_until 2026-01-01 is before valid_from 2026-02-01"):
        make_rule(0, "09:00", "12:00", 30, date(2026, 2, 1), date(2026, 1, 1))


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(RuleError, match="'Mars/Olympus' is not an IANA time zone"):
        slots.zone("Mars/Olympus")


def test_overlapping_rules_are_refused_also_across_the_week_boundary() -> None:
    with pytest.raises(RuleError, match="rules overlap: Monday 09:00-12:00"):
        slots.check_rules([make_rule(0, "09:00", "12:00", 30), make_rule(0, "11:30", "13:00", 30)])
    # Sunday 22:00 to Monday 02:00 runs into a Monday 01:00 rule.
    with pytest.raises(RuleError, match="Sunday 22:00-02:00 \\(ends the next day\\)"):
        slots.check_rules([make_rule(6, "22:00", "02:00", 60), make_rule(0, "01:00", "03:00", 60)])
    slots.check_rules([make_rule(0, "09:00", "12:00", 30), make_rule(0, "12:00", "13:00", 30),
                       make_rule(6, "22:00", "24:00", 60), make_rule(0, "00:00", "02:00", 60)])
    # The same hours in periods that do not meet are fine (a new timetable from a date on).
    slots.check_rules([make_rule(0, "09:00", "12:00", 30, valid_until=date(2026, 3, 31)),
                       make_rule(0, "10:00", "13:00", 60, valid_from=date(2026, 4, 1))])


# ---- windows and slots ----------------------------------------------------------------------
def test_weekly_hours_follow_the_experts_zone_in_winter_and_summer() -> None:
    c = cal(make_rule(0, "09:00", "12:00", 30))
    winter = list(slots.free_slots(c, utc(2026, 1, 5), utc(2026, 1, 6)))  # Monday, CET (UTC+1)
    assert [s.start_ms for s in winter] == [utc(2026, 1, 5, 8, 0) + i * 30 * MIN for i in range(6)]
    assert all(s.end_ms - s.start_ms == 30 * MIN for s in winter)
    summer = list(slots.free_slots(c, utc(2026, 7, 6), utc(2026, 7, 7)))  # Monday, CEST (UTC+2)
    assert summer[0].start_ms == utc(2026, 7, 6, 7, 0) and summer[-1].end_ms == utc(2026, 7, 6, 10, 0)


def test_berlin_spring_forward_night_has_only_three_real_hours() -> None:
    # 2026-03-29, Sunday: at 02:00 CET the clocks jump to 03:00 CEST.
    c = cal(make_rule(6, "01:00", "05:00", 30))
    day = list(slots.free_slots(c, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)))
    assert len(day) == 6
    assert [local(s.start_ms, BERLIN) for s in day] == [
        "Sun 01:00 CET", "Sun 01:30 CET", "Sun 03:00 CEST", "Sun 03:30 CEST", "Sun 04:00 CEST", "Sun 04:30 CEST"]
    assert day[2].start_ms == day[1].end_ms  # no hole in real time: the hour that does not exist is skipped


def test_berlin_fall_back_night_has_five_real_hours() -> None:
    # 2026-10-25, Sunday: at 03:00 CEST the clocks go back to 02:00 CET; 02:00-03:00 happens twice.
    c = cal(make_rule(6, "01:00", "05:00", 30))
    day = list(slots.free_slots(c, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)))
    assert len(day) == 10
    assert [local(s.start_ms, BERLIN) for s in day[2:6]] == [
        "Sun 02:00 CEST", "Sun 02:30 CEST", "Sun 02:00 CET", "Sun 02:30 CET"]
    assert day[0].start_ms == at(BERLIN, 2026, 10, 25, 1) and day[-1].end_ms == at(BERLIN, 2026, 10, 25, 5)


def test_a_window_starting_in_the_spring_gap_starts_when_the_clock_jumps() -> None:
    c = cal(make_rule(6, "02:30", "04:00", 30))
    day = list(slots.free_slots(c, utc(2026, 3, 29), utc(2026, 3, 30)))
    assert [local(s.start_ms, BERLIN) for s in day] == ["Sun 03:00 CEST", "Sun 03:30 CEST"]
    assert day[0].start_ms == utc(2026, 3, 29, 1, 0)
    # A window entirely inside the missing hour is empty that night, and back the week after.
    gone = cal(make_rule(6, "02:00", "03:00", 30))
    assert list(slots.free_slots(gone, utc(2026, 3, 29), utc(2026, 3, 30))) == []
    assert len(list(slots.free_slots(gone, utc(2026, 4, 5), utc(2026, 4, 6)))) == 2


def test_an_ambiguous_wall_time_means_its_first_occurrence() -> None:
    c = cal(make_rule(6, "02:30", "03:30", 30))
    day = list(slots.free_slots(c, utc(2026, 10, 25), utc(2026, 10, 26)))
    assert day[0].start_ms == at(BERLIN, 2026, 10, 25, 2, 30, fold=0)
    assert len(day) == 4  # 02:30 CEST to 03:30 CET is two real hours


def test_new_york_change_days_and_the_weeks_when_us_and_eu_differ() -> None:
    # 2026-03-08 (Sunday) 02:00 EST -> 03:00 EDT; 2026-11-01 (Sunday) 02:00 EDT -> 01:00 EST.
    c = cal(make_rule(6, "00:00", "04:00", 60), make_rule(0, "09:00", "10:00", 60), tz=NEW_YORK)
    spring = list(slots.free_slots(c, utc(2026, 3, 8), utc(2026, 3, 9)))
    assert [local(s.start_ms, NEW_YORK) for s in spring] == ["Sun 00:00 EST", "Sun 01:00 EST", "Sun 03:00 EDT"]
    fall = list(slots.free_slots(c, utc(2026, 11, 1), utc(2026, 11, 2)))
    assert [local(s.start_ms, NEW_YORK) for s in fall] == [
        "Sun 00:00 EDT", "Sun 01:00 EDT", "Sun 01:00 EST", "Sun 02:00 EST", "Sun 03:00 EST"]
    # Monday 09:00 in New York: 14:00 UTC before the change, 13:00 UTC after it.
    before = next(slots.free_slots(c, utc(2026, 3, 2), utc(2026, 3, 3)))
    after = next(slots.free_slots(c, utc(2026, 3, 9), utc(2026, 3, 10)))
    assert (before.start_ms, after.start_ms) == (utc(2026, 3, 2, 14), utc(2026, 3, 9, 13))
    # Between the US (8 March) and the EU (29 March) changes, New York is 5 hours behind Berlin, not 6.
    assert local(after.start_ms, BERLIN) == "Mon 14:00 CET"


def test_night_shift_crosses_midnight_and_a_slot_may_span_it() -> None:
    c = cal(make_rule(0, "22:00", "02:00", 90))  # Monday night into Tuesday
    night = list(slots.free_slots(c, utc(2026, 1, 5), utc(2026, 1, 7)))
    assert [local(s.start_ms, BERLIN) for s in night] == ["Mon 22:00 CET", "Mon 23:30 CET"]
    assert local(night[1].end_ms, BERLIN) == "Tue 01:00 CET"  # the 01:00-02:00 tail is shorter than a slot
    # Asking from Tuesday 00:00 (local) still finds the window that began on Monday: slots starting from then.
    assert starts(c, at(BERLIN, 2026, 1, 6, 0, 0), utc(2026, 1, 7)) == []
    assert starts(c, at(BERLIN, 2026, 1, 5, 23, 0), utc(2026, 1, 7)) == ["Mon 23:30 CET"]


def test_validity_dates_are_the_experts_local_dates() -> None:
    # Valid from Tuesday 6 January in Shanghai: the Monday 5 January 20:00 UTC slot is already Tuesday there.
    c = cal(make_rule(1, "04:00", "05:00", 60, valid_from=date(2026, 1, 6), valid_until=date(2026, 1, 6)),
            tz=SHANGHAI)
    found = list(slots.free_slots(c, utc(2025, 12, 29), utc(2026, 1, 20)))
    assert [s.start_ms for s in found] == [utc(2026, 1, 5, 20)]


def test_exceptions_partly_overlapping_slots_remove_them_whole() -> None:
    c = cal(make_rule(0, "09:00", "12:00", 30),
            exceptions=(Interval(at(BERLIN, 2026, 1, 5, 9, 10), at(BERLIN, 2026, 1, 5, 10, 0)),  # leave
                        Interval(at(BERLIN, 2026, 1, 5, 11, 25), at(BERLIN, 2026, 1, 5, 11, 35))))  # duty
    assert starts(c, utc(2026, 1, 5), utc(2026, 1, 6)) == ["Mon 10:00 CET", "Mon 10:30 CET"]


def test_an_exception_ending_where_a_slot_starts_does_not_touch_it() -> None:
    c = cal(make_rule(0, "09:00", "10:00", 30),
            exceptions=(Interval(at(BERLIN, 2026, 1, 5, 8, 0), at(BERLIN, 2026, 1, 5, 9, 30)),))
    assert starts(c, utc(2026, 1, 5), utc(2026, 1, 6)) == ["Mon 09:30 CET"]


def test_bookings_off_the_grid_take_every_slot_they_touch() -> None:
    c = cal(make_rule(0, "09:00", "11:00", 30),
            busy=(Interval(at(BERLIN, 2026, 1, 5, 9, 45), at(BERLIN, 2026, 1, 5, 10, 5)),))
    assert starts(c, utc(2026, 1, 5), utc(2026, 1, 6)) == ["Mon 09:00 CET", "Mon 10:30 CET"]


def test_blocked_merges_and_answers_overlap_questions() -> None:
    blocked = slots.Blocked([Interval(10, 20), Interval(15, 30), Interval(40, 50), Interval(5, 5)])
    assert [blocked.overlaps(a, b) for a, b in ((0, 10), (0, 11), (30, 40), (29, 31), (50, 60), (45, 46))] == [
        False, True, False, True, False, True]
    assert blocked.contains(10) and not blocked.contains(30) and not blocked.contains(5)


def test_published_slot_is_exact_and_respects_exceptions() -> None:
    c = cal(make_rule(0, "09:00", "11:00", 30),
            exceptions=(Interval(at(BERLIN, 2026, 1, 5, 10, 0), at(BERLIN, 2026, 1, 5, 10, 30)),))
    nine = at(BERLIN, 2026, 1, 5, 9, 0)
    assert slots.published_slot(c, nine, nine + 30 * MIN)
    assert not slots.published_slot(c, nine, nine + 60 * MIN)  # two slots are not one
    assert not slots.published_slot(c, nine + 5 * MIN, nine + 35 * MIN)  # off the rule's grid
    assert not slots.published_slot(c, nine + 60 * MIN, nine + 90 * MIN)  # during the exception
    assert not slots.published_slot(c, nine + 7 * 24 * HOUR - 30 * MIN, nine + 7 * 24 * HOUR)  # 08:30 next week
    assert slots.published_slot(c, nine + 7 * 24 * HOUR, nine + 7 * 24 * HOUR + 30 * MIN)


def test_within_published_hours() -> None:
    c = cal(make_rule(0, "09:00", "11:00", 30),
            exceptions=(Interval(at(BERLIN, 2026, 1, 5, 10, 0), at(BERLIN, 2026, 1, 5, 10, 30)),))
    nine = at(BERLIN, 2026, 1, 5, 9, 0)
    assert slots.within_published_hours(c, nine + 5 * MIN, nine + 45 * MIN)
    assert not slots.within_published_hours(c, nine - 15 * MIN, nine + 15 * MIN)  # starts before the hours
    assert not slots.within_published_hours(c, nine + 50 * MIN, nine + 65 * MIN)  # runs into the exception


def test_available_at() -> None:
    c = cal(make_rule(0, "22:00", "02:00", 60),
            exceptions=(Interval(at(BERLIN, 2026, 1, 12, 22, 0), at(BERLIN, 2026, 1, 13, 2, 0)),),
            busy=(Interval(at(BERLIN, 2026, 1, 5, 23, 0), at(BERLIN, 2026, 1, 6, 0, 0)),))
    assert slots.available_at(c, at(BERLIN, 2026, 1, 5, 22, 0))
    assert not slots.available_at(c, at(BERLIN, 2026, 1, 5, 21, 59))
    assert not slots.available_at(c, at(BERLIN, 2026, 1, 5, 23, 30))  # in an appointment
    assert slots.available_at(c, at(BERLIN, 2026, 1, 6, 1, 59))  # after midnight, same window
    assert not slots.available_at(c, at(BERLIN, 2026, 1, 6, 2, 0))  # the window's end is not in it
    assert not slots.available_at(c, at(BERLIN, 2026, 1, 12, 23, 0))  # on leave


# ---- proposals -------------------------------------------------------------------------------
def test_proposals_are_the_earliest_across_experts_in_time_order() -> None:
    berlin = cal(make_rule(0, "09:00", "12:00", 60), expert_id=7)  # 08:00-11:00 UTC
    new_york = cal(make_rule(0, "04:00", "06:00", 30), tz=NEW_YORK, expert_id=3)  # 09:00-11:00 UTC
    request = SlotRequest(utc(2026, 1, 5), utc(2026, 1, 6), limit=4, per_expert=3)
    assert slots.propose([berlin, new_york], request) == [
        Proposal(utc(2026, 1, 5, 8), 7, utc(2026, 1, 5, 9)),
        Proposal(utc(2026, 1, 5, 9), 3, utc(2026, 1, 5, 9, 30)),
        Proposal(utc(2026, 1, 5, 9), 7, utc(2026, 1, 5, 10)),
        Proposal(utc(2026, 1, 5, 9, 30), 3, utc(2026, 1, 5, 10)),
    ]
    only_one_each = SlotRequest(utc(2026, 1, 5), utc(2026, 1, 6), limit=5, per_expert=1)
    assert [(p.expert_id, p.start_ms) for p in slots.propose([berlin, new_york], only_one_each)] == [
        (7, utc(2026, 1, 5, 8)), (3, utc(2026, 1, 5, 9))]
    long_enough = SlotRequest(utc(2026, 1, 5), utc(2026, 1, 6), min_minutes=45)
    assert {p.expert_id for p in slots.propose([berlin, new_york], long_enough)} == {7}


def test_proposals_start_no_earlier_than_asked() -> None:
    c = cal(make_rule(0, "09:00", "12:00", 60))
    request = SlotRequest(at(BERLIN, 2026, 1, 5, 9, 1), utc(2026, 1, 13), limit=3)
    assert [local(p.start_ms, BERLIN) for p in slots.propose([c], request)] == [
        "Mon 10:00 CET", "Mon 11:00 CET", "Mon 09:00 CET"]
    assert slots.propose([c], request)[2].start_ms == at(BERLIN, 2026, 1, 12, 9)


def test_expert_in_new_york_for_a_clinic_in_shanghai_within_the_clinics_hours() -> None:
    # New York evening 18:00-23:00 (UTC-5) is Shanghai's next morning 07:00-12:00 (UTC+8).
    expert = cal(make_rule(0, "18:00", "23:00", 60), tz=NEW_YORK)
    clinic_hours = slots.make_hours("Asia/Shanghai", "08:00", "11:30")
    request = SlotRequest(utc(2026, 1, 5), utc(2026, 1, 12), hours=clinic_hours, limit=10)
    found = slots.propose([expert], request)
    assert [local(p.start_ms, SHANGHAI) for p in found] == ["Tue 08:00 CST", "Tue 09:00 CST", "Tue 10:00 CST"]
    assert [local(p.start_ms, NEW_YORK) for p in found] == ["Mon 19:00 EST", "Mon 20:00 EST", "Mon 21:00 EST"]


def test_clinic_hours_across_midnight_and_all_day() -> None:
    expert = cal(make_rule(0, "23:00", "02:00", 60), tz=SHANGHAI)
    night = SlotRequest(utc(2026, 1, 4), utc(2026, 1, 7), hours=slots.make_hours("Asia/Shanghai", "20:00", "01:00"))
    assert [local(p.start_ms, SHANGHAI) for p in slots.propose([expert], night)] == ["Mon 23:00 CST", "Tue 00:00 CST"]
    all_day = SlotRequest(utc(2026, 1, 4), utc(2026, 1, 7), hours=slots.make_hours("Asia/Shanghai", "00:00", "24:00"))
    spanning = cal(make_rule(0, "23:30", "00:30", 60), tz=SHANGHAI)
    assert len(slots.propose([spanning], all_day)) == 1


def test_a_day_at_the_experts_cap_gets_no_proposals() -> None:
    # The cap counts the expert's local day: Tuesday in Shanghai although it is still Monday in UTC.
    expert = cal(make_rule(1, "06:00", "08:00", 60), tz=SHANGHAI, daily_cap=2,
                 booked_per_day={date(2026, 1, 6): 2})
    request = SlotRequest(utc(2026, 1, 5), utc(2026, 1, 14), limit=2)
    assert [local(p.start_ms, SHANGHAI) for p in slots.propose([expert], request)] == [
        "Tue 06:00 CST", "Tue 07:00 CST"]
    assert slots.propose([expert], request)[0].start_ms == at(SHANGHAI, 2026, 1, 13, 6)


def test_request_range_must_not_be_empty() -> None:
    with pytest.raises(RuleError, match="time range is empty"):
        SlotRequest(utc(2026, 1, 5), utc(2026, 1, 5))


# ---- properties ------------------------------------------------------------------------------
ZONES = [BERLIN, NEW_YORK, SHANGHAI, ZoneInfo("Asia/Kathmandu"), ZoneInfo("Australia/Lord_Howe"),
         ZoneInfo("America/Sao_Paulo"), ZoneInfo("UTC")]


@st.composite
def rules(draw: st.DrawFn) -> slots.WeeklyRule:
    start = draw(st.integers(0, 287)) * 5
    length = draw(st.integers(1, 288)) * 5
    slot = draw(st.sampled_from([5, 10, 15, 20, 30, 45, 60, 90, 120]))
    end = (start + length) % 1440
    if end == start or length < slot:
        return make_rule(draw(st.integers(0, 6)), "09:00", "10:00", 15)
    return make_rule(draw(st.integers(0, 6)), slots.format_minute(start), slots.format_minute(end or 1440), slot)


@settings(max_examples=200, deadline=None)
@given(rule=rules(), tz=st.sampled_from(ZONES), days=st.integers(0, 3650))
def test_slots_are_ordered_disjoint_on_the_grid_and_inside_their_window(rule: slots.WeeklyRule, tz: ZoneInfo,
                                                                         days: int) -> None:
    start = utc(2020, 1, 1) + days * 24 * HOUR
    c = cal(rule, tz=tz)
    found = list(slots.free_slots(c, start, start + 15 * 24 * HOUR))
    assert found, "a weekly rule yields slots within two weeks"
    ws = slots.windows(c.rules, tz, start, start + 15 * 24 * HOUR)
    for a, b in itertools.pairwise(found):
        assert a.end_ms <= b.start_ms
    for s in found:
        assert s.start_ms % slots.UNIT_MS == 0 and s.end_ms - s.start_ms == rule.slot_minutes * MIN
        assert any(w.start_ms <= s.start_ms and s.end_ms <= w.end_ms for w in ws)
        assert slots.published_slot(c, s.start_ms, s.end_ms)
    for w in ws:
        # A window lasts its wall-clock length, give or take the DST shift of that night.
        offsets = [datetime.fromtimestamp(ms / 1000, tz).utcoffset() or timedelta() for ms in (w.start_ms, w.end_ms)]
        shift_ms = abs(offsets[1] - offsets[0]) / timedelta(milliseconds=1)
        assert abs((w.end_ms - w.start_ms) - rule.length_minutes * MIN) <= shift_ms


@st.composite
def spans(draw: st.DrawFn, base: int) -> Interval:
    start = base + draw(st.integers(-24, 3 * 24)) * 15 * MIN
    return Interval(start, start + draw(st.integers(1, 40)) * 15 * MIN)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), tz=st.sampled_from(ZONES), days=st.integers(0, 3650))
def test_free_intervals_are_exactly_the_instants_available_at(data: st.DataObject, tz: ZoneInfo, days: int) -> None:
    start = utc(2020, 1, 1) + days * 24 * HOUR
    drawn = data.draw(st.lists(rules(), min_size=0, max_size=3))
    try:
        slots.check_rules(drawn)
    except RuleError:
        drawn = drawn[:1]
    c = cal(*drawn, tz=tz, exceptions=tuple(data.draw(st.lists(spans(start), max_size=3))),
            busy=tuple(data.draw(st.lists(spans(start), max_size=3))))
    end = start + 2 * 24 * HOUR
    free = slots.free_intervals(c, start, end)
    for a, b in itertools.pairwise(free):
        assert a.end_ms < b.start_ms, "ordered, disjoint, adjoining ones merged"
    assert all(start <= iv.start_ms < iv.end_ms <= end for iv in free)
    # Every boundary, and the instants either side of it, agree with available_at; so does a 7-minute grid.
    probes = {start, end - 1, *range(start, end, 7 * MIN)}
    for iv in [*free, *c.exceptions, *c.busy, *slots.windows(c.rules, tz, start, end)]:
        probes.update(t for b in (iv.start_ms, iv.end_ms) for t in (b - 1, b, b + 1) if start <= t < end)
    for t in sorted(probes):
        assert any(iv.start_ms <= t < iv.end_ms for iv in free) == slots.available_at(c, t), local(t, tz)


def test_free_intervals_cut_windows_around_leave_and_bookings() -> None:
    monday = at(BERLIN, 2026, 1, 5)
    c = cal(make_rule(0, "09:00", "17:00", 30),
            exceptions=(Interval(monday + 12 * HOUR, monday + 13 * HOUR),),
            busy=(Interval(monday + 9 * HOUR, monday + 9 * HOUR + 30 * MIN),
                  Interval(monday + 16 * HOUR, monday + 18 * HOUR)))
    assert slots.free_intervals(c, monday, monday + 24 * HOUR) == [
        Interval(monday + 9 * HOUR + 30 * MIN, monday + 12 * HOUR),
        Interval(monday + 13 * HOUR, monday + 16 * HOUR)]
    # Clipped to the range asked for.
    assert slots.free_intervals(c, monday + 10 * HOUR, monday + 14 * HOUR) == [
        Interval(monday + 10 * HOUR, monday + 12 * HOUR), Interval(monday + 13 * HOUR, monday + 14 * HOUR)]
