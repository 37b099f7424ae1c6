"""Slot computation, pure: an expert's weekly availability (wall-clock hours in their own IANA time zone)
becomes concrete UTC windows and bookable slots; exceptions and bookings take slots away; `propose` picks the
earliest fitting slots across experts for a clinic's request.

No I/O and no clock: callers pass the rules, exceptions, bookings and `now`. Storage and booking are
`hq.scheduling`'s business.

Time rules (the expert's zone decides, DST included):
- A window is the rule's start and end wall-clock times on a local date; an end at or before the start is on
  the next day (a night shift, 22:00-02:00); "24:00" is the next midnight.
- A wall time that does not exist (the spring-forward gap: 02:30 in Berlin on the last Sunday of March) means
  the first instant after the gap; one that happens twice (fall back) means its first occurrence.
- Slots are cut from the window's start in elapsed time, so the expert's real hours are what is offered: a
  01:00-05:00 window has 3 hours of slots on the spring-forward night and 5 on the fall-back night.
- Slots start and end on the 5-minute grid of UTC (`UNIT_MS`); a slot partly overlapping an exception or a
  booking is not offered (it is not shortened either).
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTE_MS = 60_000
DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES
UNIT_MINUTES = 5
UNIT_MS = UNIT_MINUTES * MINUTE_MS  # the booking grid; `hq.models.scheduling.slot_claims` holds one row per unit
MIN_SLOT_MINUTES = 5
MAX_SLOT_MINUTES = 8 * 60
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HHMM = re.compile(r"(\d{2}):(\d{2})")


class RuleError(ValueError):
    """A weekly rule, exception or request is not acceptable; the message names the field and what was expected."""


# ---- parsing and validation ---------------------------------------------------------------------
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (e.g. "Europe/Berlin"), or RuleError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleError(f"time zone {name!r} is not an IANA time zone name such as 'Europe/Berlin'") from exc


@functools.lru_cache(maxsize=4096)  # stored rules repeat the same few times; parsing is on the matching path
def parse_minute(text: str, field_name: str, *, allow_24: bool = False) -> int:
    """"HH:MM" -> minutes after midnight, on the 5-minute grid; "24:00" only where `allow_24`."""
    match = _HHMM.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise RuleError(f"{field_name} {text!r}: expected a time HH:MM, e.g. 09:00")
    hours, minutes = int(match[1]), int(match[2])
    value = hours * 60 + minutes
    if minutes > 59 or value > DAY_MINUTES or (value == DAY_MINUTES and not allow_24):
        raise RuleError(f"{field_name} {text!r}: expected 00:00-23:59" + (" or 24:00" if allow_24 else ""))
    if minutes % UNIT_MINUTES:
        raise RuleError(f"{field_name} {text!r}: minutes must be a multiple of {UNIT_MINUTES}")
    return value


def format_minute(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


@dataclass(frozen=True, slots=True)
class WeeklyRule:
    """Every `weekday` (0 Monday .. 6 Sunday of the expert's calendar) from `start` to `end` (minutes after
    that day's midnight, 1440 the next midnight; `end` < `start` means the next day), cut into slots of
    `slot_minutes`, on the local dates from `valid_from` to `valid_until` (both included; None: open)."""

    weekday: int
    start: int
    end: int
    slot_minutes: int
    valid_from: date | None = None
    valid_until: date | None = None

    @property
    def length_minutes(self) -> int:
        return _length(self.start, self.end)

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or day >= self.valid_from) and \
               (self.valid_until is None or day <= self.valid_until)

    def week_spans(self) -> list[tuple[int, int]]:
        """The minutes of the week it covers (Monday 00:00 = 0), split where it wraps from Sunday to Monday."""
        start = self.weekday * DAY_MINUTES + self.start
        end = start + self.length_minutes
        return [(start, end)] if end <= WEEK_MINUTES else [(start, WEEK_MINUTES), (0, end - WEEK_MINUTES)]


def make_rule(weekday: int, start: str, end: str, slot_minutes: int, valid_from: date | None = None,
              valid_until: date | None = None, *, where: str = "rule") -> WeeklyRule:
    """A checked rule from its published form ("HH:MM" times); RuleError names `where` and the field."""
    if not isinstance(weekday, int) or isinstance(weekday, bool) or not 0 <= weekday <= 6:
        raise RuleError(f"{where}: weekday {weekday!r}: expected 0 (Monday) to 6 (Sunday)")
    begin = parse_minute(start, f"{where}: start")
    finish = parse_minute(end, f"{where}: end", allow_24=True) or DAY_MINUTES  # an end at 00:00 is midnight
    if begin == finish:
        raise RuleError(f"{where}: start and end are both {start}: the window is empty (a whole day is "
                        "00:00-24:00)")
    if (not isinstance(slot_minutes, int) or isinstance(slot_minutes, bool)
            or not MIN_SLOT_MINUTES <= slot_minutes <= MAX_SLOT_MINUTES or slot_minutes % UNIT_MINUTES):
        raise RuleError(f"{where}: slot_minutes {slot_minutes!r}: expected a multiple of {UNIT_MINUTES} from "
                        f"{MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES}")
    if valid_from is not None and valid_until is not None and valid_until < valid_from:
        raise RuleError(f"{where}: valid_until {valid_until} is before valid_from {valid_from}")
    rule = WeeklyRule(weekday, begin, finish, slot_minutes, valid_from, valid_until)
    if rule.length_minutes < slot_minutes:
        raise RuleError(f"{where}: the window {start}-{end} is shorter than one slot of {slot_minutes} minutes")
    return rule


def check_rules(rules: Sequence[WeeklyRule]) -> None:
    """Rules of one expert must not overlap (where their validity periods meet): the same hour published
    twice would be offered twice."""
    for i, a in enumerate(rules):
        for b in rules[i + 1:]:
            if not _periods_meet(a, b):
                continue
            for a0, a1 in a.week_spans():
                for b0, b1 in b.week_spans():
                    if a0 < b1 and b0 < a1:
                        raise RuleError(
                            f"rules overlap: {describe(a)} and {describe(b)}; publish each hour once")


def _periods_meet(a: WeeklyRule, b: WeeklyRule) -> bool:
    lo = max(a.valid_from or date.min, b.valid_from or date.min)
    hi = min(a.valid_until or date.max, b.valid_until or date.max)
    return lo <= hi


def _length(start: int, end: int) -> int:
    return end - start if end > start else end + DAY_MINUTES - start


def describe(rule: WeeklyRule) -> str:
    night = " (ends the next day)" if rule.crosses_midnight else ""
    return (f"{WEEKDAYS[rule.weekday]} {format_minute(rule.start)}-{format_minute(rule.end)}{night}, "
            f"{rule.slot_minutes}-minute slots")


# ---- local wall time -> UTC -------------------------------------------------------------------
def _ms(t: datetime) -> int:
    return int(t.timestamp()) * 1000


@functools.lru_cache(maxsize=65536)  # many experts share a zone and hours: each instant is worked out once
def local_ms(day: date, minute: int, tz: ZoneInfo) -> int:
    """The instant the expert's clock shows `minute` on `day` (see the module's time rules for DST)."""
    day = day + timedelta(days=minute // DAY_MINUTES)
    minute %= DAY_MINUTES
    wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=tz)  # fold=0: first occurrence
    instant = _ms(wall)
    if _wall(instant, tz) == wall.replace(tzinfo=None):
        return instant
    # In a gap. fold=0 used the offset before the transition, which lands after it; fold=1 lands before it.
    # The answer is the transition itself: the first instant whose wall time is at or past `wall`.
    lo, hi = _ms(wall.replace(fold=1)) // MINUTE_MS, instant // MINUTE_MS
    naive = wall.replace(tzinfo=None)
    while lo < hi:
        mid = (lo + hi) // 2
        if _wall(mid * MINUTE_MS, tz) >= naive:
            hi = mid
        else:
            lo = mid + 1
    return lo * MINUTE_MS


def _wall(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).replace(tzinfo=None)


def local_date(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz).date()


# ---- windows and slots -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """[start_ms, end_ms), UTC."""

    start_ms: int
    end_ms: int

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        return self.start_ms < end_ms and start_ms < self.end_ms

    def contains(self, start_ms: int, end_ms: int) -> bool:
        return self.start_ms <= start_ms and end_ms <= self.end_ms


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One concrete stretch of published availability, from a rule on a local date."""

    start_ms: int
    end_ms: int
    slot_minutes: int
    day: date = field(compare=False)  # the rule's local date (where the window starts)


@dataclass(frozen=True, slots=True, order=True)
class Slot:
    start_ms: int
    end_ms: int


def windows(rules: Iterable[WeeklyRule], tz: ZoneInfo, from_ms: int, to_ms: int) -> list[Window]:
    """The windows of `rules` that overlap [from_ms, to_ms), in start order."""
    rules = list(rules)
    found: list[Window] = []
    # A window may start the local day before `from_ms` (a night shift) or, with DST, up to a day around it.
    day, last = local_date(from_ms, tz) - timedelta(days=1), local_date(to_ms, tz)
    while day <= last:
        for rule in rules:
            if rule.weekday != day.weekday() or not rule.valid_on(day):
                continue
            start = local_ms(day, rule.start, tz)
            end = local_ms(day, rule.start + rule.length_minutes, tz)
            if start < to_ms and end > from_ms and end > start:
                found.append(Window(start, end, rule.slot_minutes, day))
        day += timedelta(days=1)
    found.sort()
    return found


def window_slots(window: Window) -> Iterator[Slot]:
    """The window cut into slots from its start (moved up to the 5-minute grid); a short tail is no slot."""
    length = window.slot_minutes * MINUTE_MS
    start = -(-window.start_ms // UNIT_MS) * UNIT_MS
    while start + length <= window.end_ms:
        yield Slot(start, start + length)
        start += length


class Blocked:
    """Times taken away from availability (exceptions, bookings), for fast overlap questions."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        merged: list[Interval] = []
        for iv in sorted(i for i in intervals if i.end_ms > i.start_ms):
            if merged and iv.start_ms <= merged[-1].end_ms:
                last = merged[-1]
                merged[-1] = Interval(last.start_ms, max(last.end_ms, iv.end_ms))
            else:
                merged.append(iv)
        self._intervals = merged
        self._ends = [iv.end_ms for iv in merged]

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        i = bisect.bisect_right(self._ends, start_ms)  # the first interval ending after start_ms
        return i < len(self._intervals) and self._intervals[i].start_ms < end_ms

    def contains(self, at_ms: int) -> bool:
        return self.overlaps(at_ms, at_ms + 1)

    def subtract(self, start_ms: int, end_ms: int) -> Iterator[Interval]:
        """The parts of [start_ms, end_ms) outside every blocked interval, in order."""
        i = bisect.bisect_right(self._ends, start_ms)
        while start_ms < end_ms:
            if i == len(self._intervals) or self._intervals[i].start_ms >= end_ms:
                yield Interval(start_ms, end_ms)
                return
            iv = self._intervals[i]
            if iv.start_ms > start_ms:
                yield Interval(start_ms, iv.start_ms)
            start_ms = iv.end_ms
            i += 1


@dataclass(frozen=True, slots=True)
class Calendar:
    """One expert's availability as `propose` and `free_slots` need it. `exceptions`: leave and clinic duty;
    `busy`: intervals of appointments holding the time; `booked_per_day`: appointments per local date of the
    expert (for `daily_cap`; None: no cap)."""

    expert_id: int
    tz: ZoneInfo
    rules: tuple[WeeklyRule, ...]
    exceptions: tuple[Interval, ...] = ()
    busy: tuple[Interval, ...] = ()
    daily_cap: int | None = None
    booked_per_day: dict[date, int] = field(default_factory=dict)


def free_slots(cal: Calendar, from_ms: int, to_ms: int) -> Iterator[Slot]:
    """The calendar's free slots starting in [from_ms, to_ms), in time order (lazily)."""
    blocked = Blocked([*cal.exceptions, *cal.busy])
    for window in windows(cal.rules, cal.tz, from_ms, to_ms):
        for slot in window_slots(window):
            if slot.start_ms < from_ms:
                continue
            if slot.start_ms >= to_ms:
                break
            if not blocked.overlaps(slot.start_ms, slot.end_ms):
                yield slot


def published_slot(cal: Calendar, start_ms: int, end_ms: int) -> bool:
    """Whether [start_ms, end_ms) is exactly one of the published slots and no exception covers any of it
    (bookings are not looked at: the slot claims decide those)."""
    if end_ms <= start_ms:
        return False
    excepted = Blocked(cal.exceptions)
    for window in windows(cal.rules, cal.tz, start_ms, start_ms + 1):
        for slot in window_slots(window):
            if slot.start_ms == start_ms:
                return slot.end_ms == end_ms and not excepted.overlaps(start_ms, end_ms)
            if slot.start_ms > start_ms:
                break
    return False


def within_published_hours(cal: Calendar, start_ms: int, end_ms: int) -> bool:
    """Whether [start_ms, end_ms) lies inside one availability window with no exception touching it."""
    return any(w.start_ms <= start_ms and end_ms <= w.end_ms for w in windows(cal.rules, cal.tz, start_ms, end_ms)) \
        and not Blocked(cal.exceptions).overlaps(start_ms, end_ms)


def available_at(cal: Calendar, at_ms: int) -> bool:
    """Inside a window, not during an exception, not in a busy interval: free to take a call now."""
    if Blocked([*cal.exceptions, *cal.busy]).contains(at_ms):
        return False
    return any(w.start_ms <= at_ms < w.end_ms for w in windows(cal.rules, cal.tz, at_ms, at_ms + 1))


def free_intervals(cal: Calendar, from_ms: int, to_ms: int) -> list[Interval]:
    """The stretches of [from_ms, to_ms) inside a window and outside every exception and busy interval, in time
    order, adjoining windows merged: the instants t with `available_at(cal, t)`, as intervals."""
    blocked = Blocked([*cal.exceptions, *cal.busy])
    found: list[Interval] = []
    for window in windows(cal.rules, cal.tz, from_ms, to_ms):
        for piece in blocked.subtract(max(window.start_ms, from_ms), min(window.end_ms, to_ms)):
            if found and piece.start_ms <= found[-1].end_ms:
                found[-1] = Interval(found[-1].start_ms, max(found[-1].end_ms, piece.end_ms))
            else:
                found.append(piece)
    return found


# ---- proposals ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LocalHours:
    """Daily hours in a zone (e.g. the clinic's opening hours): `start` to `end` minutes after midnight (1440:
    the next midnight), an end before the start meaning the next day."""

    tz: ZoneInfo
    start: int
    end: int

    def spans(self, from_ms: int, to_ms: int) -> list[Interval]:
        """The hours as UTC intervals overlapping [from_ms, to_ms); days that touch are joined (all-day hours
        are one stretch, so a slot across midnight fits)."""
        daily = [WeeklyRule(d, self.start, self.end, MIN_SLOT_MINUTES) for d in range(7)]
        joined: list[Interval] = []
        for w in windows(daily, self.tz, from_ms, to_ms):
            if joined and w.start_ms <= joined[-1].end_ms:
                joined[-1] = Interval(joined[-1].start_ms, max(joined[-1].end_ms, w.end_ms))
            else:
                joined.append(Interval(w.start_ms, w.end_ms))
        return joined


def make_hours(tz_name: str, start: str, end: str) -> LocalHours:
    begin = parse_minute(start, "hours start")
    finish = parse_minute(end, "hours end", allow_24=True) or DAY_MINUTES
    if begin == finish:
        raise RuleError(f"hours {start}-{end} are empty (all day is 00:00-24:00)")
    return LocalHours(zone(tz_name), begin, finish)


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """What a clinic asks for: slots starting in [not_before_ms, not_after_ms), at least `min_minutes` long,
    inside the clinic's `hours` (its own zone) when given; at most `limit` proposals, `per_expert` of each."""

    not_before_ms: int
    not_after_ms: int
    min_minutes: int = 0
    hours: LocalHours | None = None
    limit: int = 5
    per_expert: int = 3

    def __post_init__(self) -> None:
        if self.not_after_ms <= self.not_before_ms:
            raise RuleError("the request's time range is empty: not_after must be later than not_before")
        if self.limit < 1 or self.per_expert < 1:
            raise RuleError("limit and per_expert must be at least 1")


@dataclass(frozen=True, slots=True, order=True)
class Proposal:
    start_ms: int
    expert_id: int
    end_ms: int


def _fitting(cal: Calendar, request: SlotRequest) -> Iterator[Proposal]:
    hours = [] if request.hours is None else \
        request.hours.spans(request.not_before_ms, request.not_after_ms + DAY_MINUTES * MINUTE_MS)
    h = 0
    for slot in free_slots(cal, request.not_before_ms, request.not_after_ms):
        if slot.end_ms - slot.start_ms < request.min_minutes * MINUTE_MS:
            continue
        if cal.daily_cap is not None and \
                cal.booked_per_day.get(local_date(slot.start_ms, cal.tz), 0) >= cal.daily_cap:
            continue
        if request.hours is not None:
            while h < len(hours) and hours[h].end_ms < slot.end_ms:
                h += 1  # hours windows do not overlap: those ending before this slot fit no later slot
            if not (h < len(hours) and hours[h].start_ms <= slot.start_ms and slot.end_ms <= hours[h].end_ms):
                continue
        yield Proposal(slot.start_ms, cal.expert_id, slot.end_ms)


def propose(calendars: Iterable[Calendar], request: SlotRequest) -> list[Proposal]:
    """The earliest fitting free slots across the experts, earliest first (ties: lower expert id first)."""
    # Each stream is in time order, so an expert's first `per_expert` fitting slots are all that can be chosen.
    streams = [itertools.islice(_fitting(cal, request), request.per_expert) for cal in calendars]
    return list(itertools.islice(heapq.merge(*streams), request.limit))
