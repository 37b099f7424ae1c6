"""Scheduling over the database: experts publish weekly availability and exceptions (leave, clinic duty), who
is available now (for emergencies), and proposals of the earliest fitting slots for a clinic's request.

Synchronous functions over a connection (run them in a thread). Not booking (`hq.booking`), not the slot
arithmetic (`hq.slots`, pure), not the pages and API (`hq.console.schedule`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hq import audit, id_sets, slots
from hq import departments as department_names
from hq import experts as expert_directory
from hq.auth import Actor, Role
from hq.models import (
    appointments,
    availability_exceptions,
    availability_rules,
    departments,
    expert_free_windows,
    expert_presence,
    experts,
)

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("booked", "pending_approval")  # appointments that hold their time (and its slot claims)
IN_CHUNK = 500  # ids per IN (...): well inside SQLite's and PostgreSQL's parameter limits


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), IN_CHUNK):
        yield list(ids[i:i + IN_CHUNK])


def rules_from_rows(rows: Iterable[Any]) -> tuple[slots.WeeklyRule, ...]:
    """Stored rules (checked when they were published) as `hq.slots` rules."""
    return tuple(
        slots.WeeklyRule(r.weekday, slots.parse_minute(r.start_time, "start_time"),
                         slots.parse_minute(r.end_time, "end_time", allow_24=True) or slots.DAY_MINUTES,
                         r.slot_minutes, r.valid_from, r.valid_until)
        for r in rows)


def _rules(conn: sa.Connection, chunk: list[int], into: dict[int, list[Any]],
           weekdays: Iterable[int] | None = None) -> None:
    r = availability_rules
    q = sa.select(r.c.expert_id, r.c.weekday, r.c.start_time, r.c.end_time, r.c.slot_minutes, r.c.valid_from,
                  r.c.valid_until).where(r.c.expert_id.in_(chunk)).order_by(r.c.id)
    if weekdays is not None:
        q = q.where(r.c.weekday.in_(sorted(set(weekdays))))
    for row in conn.execute(q):
        into.setdefault(int(row.expert_id), []).append(row)


def _zones(conn: sa.Connection, expert_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
    found: dict[int, tuple[str, int]] = {}
    for chunk in _chunks(expert_ids):
        for row in conn.execute(sa.select(experts.c.id, experts.c.time_zone, experts.c.daily_cap)
                                .where(experts.c.id.in_(chunk))):
            found[int(row.id)] = (row.time_zone, int(row.daily_cap))
    return found


def calendars(conn: sa.Connection, expert_ids: Iterable[int], from_ms: int, to_ms: int, *,
              exclude_appointment: int | None = None,
              holding: Sequence[str] = ACTIVE_STATUSES) -> dict[int, slots.Calendar]:
    """The experts' calendars with what matters for slots starting in [from_ms, to_ms): rules, exceptions,
    appointments holding time (those in a `holding` status), and appointments per local day (for the daily
    cap). Experts whose stored time zone is unknown to this machine are left out (and logged)."""
    ids = sorted(set(expert_ids))
    zones = _zones(conn, ids)
    x, a = availability_exceptions, appointments
    rules: dict[int, list[Any]] = {}
    blocked: dict[int, list[slots.Interval]] = {}
    busy: dict[int, list[slots.Interval]] = {}
    # A slot starting before `to_ms` may end up to a slot length later; a day either side covers local dates.
    lo, hi = from_ms - 86_400_000, to_ms + 86_400_000
    for chunk in _chunks(ids):
        _rules(conn, chunk, rules)
        for row in conn.execute(sa.select(x.c.expert_id, x.c.starts_ms, x.c.ends_ms).where(
                x.c.expert_id.in_(chunk), x.c.starts_ms < hi, x.c.ends_ms > lo)):
            blocked.setdefault(int(row.expert_id), []).append(slots.Interval(row.starts_ms, row.ends_ms))
        q = sa.select(a.c.expert_id, a.c.start_ms, a.c.end_ms).where(
            a.c.expert_id.in_(chunk), a.c.status.in_(holding), a.c.start_ms < hi, a.c.end_ms > lo)
        if exclude_appointment is not None:
            q = q.where(a.c.id != exclude_appointment)
        for row in conn.execute(q):
            busy.setdefault(int(row.expert_id), []).append(slots.Interval(row.start_ms, row.end_ms))
    found: dict[int, slots.Calendar] = {}
    for expert_id, (zone_name, cap) in zones.items():
        try:
            tz = slots.zone(zone_name)
        except slots.RuleError as exc:
            log.warning("expert %d has no usable time zone, no slots for them: %s", expert_id, exc)
            continue
        held = busy.get(expert_id, [])
        per_day: dict[Any, int] = {}
        for iv in held:
            day = slots.local_date(iv.start_ms, tz)
            per_day[day] = per_day.get(day, 0) + 1
        found[expert_id] = slots.Calendar(expert_id, tz, rules_from_rows(rules.get(expert_id, [])),
                                          tuple(blocked.get(expert_id, [])), tuple(held), cap, per_day)
    return found


def minute_at(day: date, at_ms: int, tz: ZoneInfo) -> int:
    """The last minute after `day`'s local midnight (it may pass 1440: the next day) whose instant
    (`hq.slots.local_ms`) is not after `at_ms`. `local_ms` never decreases as the minute grows, so a window of
    `day` from minute s to minute e covers `at_ms` exactly when s <= minute_at(...) < e: DST gaps and repeated
    hours included, the way `hq.slots.windows` reads them."""
    lo, hi = -1, 3 * slots.DAY_MINUTES  # local_ms(day, lo) <= at_ms < local_ms(day, hi) for today and yesterday
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if slots.local_ms(day, mid, tz) <= at_ms:
            lo = mid
        else:
            hi = mid
    return lo


def _covering(zone_names: Iterable[str], at_ms: int) -> list[tuple[str, int, Any]]:
    """Per zone and local day (yesterday, for a night shift; today), the zone, the weekday and the SQL condition
    on a rule that its window on that day covers `at_ms`. Zones this machine does not know are left out: their
    experts are unavailable (and logged).

    Stored times are "HH:MM" (`slots.format_minute`): strings of one shape, digits in the same places, which any
    collation orders as the minutes they name, so they compare as text with no conversion per row. An end at or
    before the start is on the next day, "00:00" is midnight."""
    r = availability_rules
    found: list[tuple[str, int, Any]] = []
    for name in sorted(set(zone_names)):
        try:
            tz = slots.zone(name)
        except slots.RuleError as exc:
            log.warning("experts in time zone %r are treated as unavailable: %s", name, exc)
            continue
        today = slots.local_date(at_ms, tz)
        for day in (today - timedelta(days=1), today):
            minute = minute_at(day, at_ms, tz)
            if 0 <= minute < slots.DAY_MINUTES:  # inside the day: started by now, not ended yet (or ends tomorrow)
                now = slots.format_minute(minute)
                inside = sa.and_(r.c.start_time <= now, sa.or_(r.c.end_time <= r.c.start_time, r.c.end_time > now))
            elif slots.DAY_MINUTES <= minute < 2 * slots.DAY_MINUTES:  # the next day: a night shift not over yet
                inside = sa.and_(r.c.end_time <= r.c.start_time,
                                 r.c.end_time > slots.format_minute(minute - slots.DAY_MINUTES))
            else:
                continue
            found.append((name, day.weekday(), sa.and_(
                inside,
                sa.or_(r.c.valid_from.is_(None), r.c.valid_from <= day),
                sa.or_(r.c.valid_until.is_(None), r.c.valid_until >= day))))
    return found


def available_now(conn: sa.Connection, expert_ids: Iterable[int], at_ms: int) -> set[int]:
    """The experts who at `at_ms` are inside a published availability window, not on leave or clinic duty
    and not in a booked appointment (for matching emergencies: who can take a call now).

    From the precomputed free windows (`hq.presence`) where an expert's are fresh and cover `at_ms`: one probe
    per expert; the others (changed since, never computed, or `at_ms` outside the computed range) from their
    rules (`available_now_from_rules`). Either way the same answer."""
    ids = list(expert_ids)
    if not ids:
        return set()
    # (expert id, the end of the free window covering at_ms or None) of each expert with fresh windows
    # .all(): one fetchall, several times faster than iterating the result row by row.
    rows = conn.execute(_precomputed(conn.dialect.name), {"ids": id_sets.bound(conn.dialect, ids), "at": at_ms}).all()
    known: dict[int, int | None] = {r[0]: r[1] for r in rows}
    found = {i for i, free_until in known.items() if free_until is not None}
    rest = [i for i in ids if i not in known]
    return found | available_now_from_rules(conn, rest, at_ms) if rest else found


@functools.cache
def _precomputed(dialect_name: str) -> sa.Select[Any]:
    # Built once per dialect (building and compiling it cost more than SQLite takes to run it); a scalar
    # subquery, not EXISTS: an integer needs no conversion per row, a boolean does.
    p, w = expert_presence, expert_free_windows
    at = sa.bindparam("at", type_=sa.BigInteger)
    free_until = sa.select(w.c.ends_ms).where(w.c.expert_id == p.c.expert_id, w.c.starts_ms <= at,
                                              w.c.ends_ms > at).limit(1).scalar_subquery()
    return sa.select(p.c.expert_id, free_until).where(
        id_sets.among_named(dialect_name, p.c.expert_id, "ids"), p.c.from_ms <= at, p.c.until_ms > at)


def available_now_from_rules(conn: sa.Connection, expert_ids: Iterable[int], at_ms: int) -> set[int]:
    """`available_now` worked out from the experts' weekly rules, exceptions and bookings, ignoring the
    precomputed windows.

    Set-based, for the thousands of candidates of an emergency: one query matches the experts' rules of the
    weekdays that can matter against the windows covering `at_ms` in each of the directory's time zones, and
    drops those away; the ids go in as one parameter (`hq.id_sets`)."""
    ids = list(expert_ids)
    if not ids:
        return set()
    covering = _covering(expert_directory.time_zones(conn), at_ms)
    if not covering:
        return set()
    e, r, x, a = experts, availability_rules, availability_exceptions, appointments
    among = id_sets.among(conn.dialect, e.c.id, ids)
    if conn.dialect.name == "postgresql":
        # One probe of the (expert_id, weekday) index per expert and covering day of their zone, and who is away
        # now (few) listed once and hashed (NOT IN over non-null ids). The form SQLite runs below, one EXISTS over
        # an OR of every zone's conditions, PostgreSQL estimates at one row: it joined every expert with every rule
        # and compared each with every current booking (10,000 experts: 3.6 s; this: ~0.1 s).
        in_window = sa.or_(*(sa.and_(e.c.time_zone == zone, sa.exists().where(
            r.c.expert_id == e.c.id, r.c.weekday == weekday, covers)) for zone, weekday, covers in covering))
        on_leave = sa.select(x.c.expert_id).where(x.c.ends_ms > at_ms, x.c.starts_ms <= at_ms)
        in_appointment = sa.select(a.c.expert_id).where(a.c.end_ms > at_ms, a.c.start_ms <= at_ms,
                                                        a.c.status == "booked")
        query = sa.select(e.c.id).where(among, in_window, e.c.id.not_in(on_leave), e.c.id.not_in(in_appointment))
    else:
        # SQLite drives this from the candidates (json_each) and probes per expert; the form above makes it scan
        # every expert of the covering zones instead (1,600 candidates: ~17 ms -> ~110 ms).
        weekdays = sorted({weekday for _, weekday, _ in covering})
        in_window = sa.exists().where(r.c.expert_id == e.c.id, r.c.weekday.in_(weekdays), sa.or_(*(
            sa.and_(e.c.time_zone == zone, r.c.weekday == weekday, covers) for zone, weekday, covers in covering)))
        leave_now = sa.exists().where(x.c.expert_id == e.c.id, x.c.ends_ms > at_ms, x.c.starts_ms <= at_ms)
        booked_now = sa.exists().where(a.c.expert_id == e.c.id, a.c.end_ms > at_ms, a.c.start_ms <= at_ms,
                                       a.c.status == "booked")
        # In this order: the database looks up leave and bookings only for the experts inside a window.
        query = sa.select(e.c.id).where(among, in_window, ~leave_now, ~booked_now)
    return set(conn.execute(query).scalars().all())


# ---- publishing availability ------------------------------------------------------------------
class ScheduleError(ValueError):
    """Published availability or a request is not acceptable; `field` names the input, `status` the HTTP code."""

    def __init__(self, message: str, field: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def may_publish(actor: Actor, expert_id: int) -> bool:
    """Experts publish their own availability; coordinators (and admins) anyone's."""
    return actor.role in (Role.ADMIN, Role.COORDINATOR) or (
        actor.role is Role.EXPERT and actor.expert_id == expert_id)


def _publisher(conn: sa.Connection, actor: Actor, expert_id: int) -> dict[str, Any]:
    if not may_publish(actor, expert_id):
        raise ScheduleError("experts publish their own availability; coordinators anyone's", status=403)
    row = conn.execute(sa.select(experts.c.id, experts.c.name, experts.c.time_zone)
                       .where(experts.c.id == expert_id)).mappings().first()
    if row is None:
        raise ScheduleError(f"no expert {expert_id}", "expert_id", status=404)
    return dict(row)


def _date(value: Any, where: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise slots.RuleError(f"{where} {value!r}: expected a date YYYY-MM-DD") from None


def parse_rules(given: Any) -> list[slots.WeeklyRule]:
    """Published rules ([{"weekday", "start", "end", "slot_minutes", "valid_from"?, "valid_until"?}, ...])
    checked one by one and together; RuleError names the rule (rules[2]) and its field."""
    if not isinstance(given, list):
        raise slots.RuleError("rules: expected a list of weekly rules")
    parsed = []
    for i, item in enumerate(given):
        where = f"rules[{i}]"
        if not isinstance(item, dict):
            raise slots.RuleError(f"{where}: expected an object with weekday, start, end and slot_minutes")
        unknown = set(item) - {"weekday", "start", "end", "slot_minutes", "valid_from", "valid_until"}
        if unknown:
            raise slots.RuleError(f"{where}: unknown fields {sorted(unknown)}")
        missing = [k for k in ("weekday", "start", "end", "slot_minutes") if k not in item]
        if missing:
            raise slots.RuleError(f"{where}: missing {', '.join(missing)}")
        parsed.append(slots.make_rule(item["weekday"], item["start"], item["end"], item["slot_minutes"],
                                      _date(item.get("valid_from"), f"{where}: valid_from"),
                                      _date(item.get("valid_until"), f"{where}: valid_until"), where=where))
    slots.check_rules(parsed)
    return parsed


def rule_json(rule: slots.WeeklyRule) -> dict[str, Any]:
    return {"weekday": rule.weekday, "start": slots.format_minute(rule.start), "end": slots.format_minute(rule.end),
            "slot_minutes": rule.slot_minutes,
            "valid_from": None if rule.valid_from is None else rule.valid_from.isoformat(),
            "valid_until": None if rule.valid_until is None else rule.valid_until.isoformat(),
            "text": slots.describe(rule)}


def publish_rules(conn: sa.Connection, actor: Actor, expert_id: int, given: Any) -> list[slots.WeeklyRule]:
    """Replace the expert's weekly rules. Booked appointments keep their time (their claims hold it) even
    where the new hours no longer cover it; `availability` lists them as outside the hours."""
    expert = _publisher(conn, actor, expert_id)
    try:
        rules = parse_rules(given)
    except slots.RuleError as exc:
        raise ScheduleError(str(exc), "rules") from exc
    r = availability_rules
    conn.execute(r.delete().where(r.c.expert_id == expert_id))
    if rules:
        conn.execute(r.insert(), [{"expert_id": expert_id, "weekday": x.weekday,
                                   "start_time": slots.format_minute(x.start), "end_time": slots.format_minute(x.end),
                                   "slot_minutes": x.slot_minutes, "valid_from": x.valid_from,
                                   "valid_until": x.valid_until} for x in rules])
    audit.record(conn, actor, "availability.publish", "expert", expert_id,
                 detail={"time_zone": expert["time_zone"], "rules": [rule_json(x) for x in rules]})
    return rules


EXCEPTION_KINDS = ("leave", "clinic_duty")
NOTE_MAX = 500


def add_exception(conn: sa.Connection, actor: Actor, expert_id: int, *, starts_ms: int, ends_ms: int, kind: str,
                  note: str | None, now: int) -> tuple[int, list[dict[str, Any]]]:
    """Leave or clinic duty from `starts_ms` to `ends_ms`; returns its id and the active appointments it
    overlaps (they stand until someone moves or cancels them: the page lists them)."""
    _publisher(conn, actor, expert_id)
    if kind not in EXCEPTION_KINDS:
        raise ScheduleError(f"kind {kind!r}: expected leave or clinic_duty", "kind")
    if ends_ms <= starts_ms:
        raise ScheduleError("the exception must end after it starts", "ends")
    if ends_ms <= now:
        raise ScheduleError("the exception is over already", "ends")
    text = (note or "").strip() or None
    if text is not None and len(text) > NOTE_MAX:
        raise ScheduleError(f"note: at most {NOTE_MAX} characters", "note")
    x = availability_exceptions
    result = conn.execute(x.insert().values(expert_id=expert_id, starts_ms=starts_ms, ends_ms=ends_ms, kind=kind,
                                            note=text, created_by_user_id=actor.user_id, created_ms=now))
    exception_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    a = appointments
    clashes = [dict(r) for r in conn.execute(
        sa.select(a.c.id, a.c.start_ms, a.c.end_ms, a.c.status, a.c.clinic_id).where(
            a.c.expert_id == expert_id, a.c.status.in_(ACTIVE_STATUSES), a.c.start_ms < ends_ms,
            a.c.end_ms > starts_ms).order_by(a.c.start_ms)).mappings()]
    audit.record(conn, actor, "availability.exception_add", "expert", expert_id,
                 detail={"exception_id": exception_id, "kind": kind, "starts_ms": starts_ms, "ends_ms": ends_ms,
                         "overlapping_appointments": [c["id"] for c in clashes]})
    return exception_id, clashes


def remove_exception(conn: sa.Connection, actor: Actor, exception_id: int) -> int:
    """Remove leave or clinic duty; returns the expert's id."""
    x = availability_exceptions
    row = conn.execute(sa.select(x).where(x.c.id == exception_id)).mappings().first()
    if row is None or not may_publish(actor, row["expert_id"]):
        raise ScheduleError(f"no exception {exception_id} you may remove", "exception_id", status=404)
    conn.execute(x.delete().where(x.c.id == exception_id))
    audit.record(conn, actor, "availability.exception_remove", "expert", row["expert_id"],
                 detail={"exception_id": exception_id, "kind": row["kind"], "starts_ms": row["starts_ms"],
                         "ends_ms": row["ends_ms"]})
    return int(row["expert_id"])


def availability(conn: sa.Connection, expert_id: int, *, now: int) -> dict[str, Any]:
    """The expert's zone, weekly rules and the exceptions not over yet."""
    row = conn.execute(sa.select(experts.c.id, experts.c.name, experts.c.time_zone, experts.c.department_id,
                                 experts.c.user_id).where(experts.c.id == expert_id)).mappings().first()
    if row is None:
        raise ScheduleError(f"no expert {expert_id}", "expert_id", status=404)
    found: dict[int, list[Any]] = {}
    _rules(conn, [expert_id], found)
    x = availability_exceptions
    exceptions = [dict(r) for r in conn.execute(sa.select(x).where(x.c.expert_id == expert_id, x.c.ends_ms > now)
                                                .order_by(x.c.starts_ms)).mappings()]
    return {"expert": dict(row), "rules": list(rules_from_rows(found.get(expert_id, []))), "exceptions": exceptions}


# ---- proposals ----------------------------------------------------------------------------------
def candidate_experts(conn: sa.Connection, *, department_id: int | None = None, expert_id: int | None = None,
                      language: str | None = None) -> list[dict[str, Any]]:
    """Active experts of the department (or the one expert asked for), optionally speaking `language`."""
    q = sa.select(experts.c.id, experts.c.name, experts.c.title, experts.c.hospital, experts.c.department_id,
                  experts.c.time_zone, experts.c.languages).where(experts.c.active.is_(True))
    if expert_id is not None:
        q = q.where(experts.c.id == expert_id)
    elif department_id is not None:
        q = q.where(experts.c.department_id == department_id)
    else:
        raise ScheduleError("ask by department or by expert", "department")
    rows = [dict(r) for r in conn.execute(q.order_by(experts.c.id)).mappings()]
    if language:
        wanted = language.strip().lower()
        rows = [r for r in rows if any(str(x).lower().split("-")[0] == wanted.split("-")[0]
                                       for x in (r["languages"] or []))]
    return rows


def propose(conn: sa.Connection, request: slots.SlotRequest, *, department_id: int | None = None,
            expert_id: int | None = None, language: str | None = None) -> list[dict[str, Any]]:
    """The earliest fitting free slots across the candidate experts, with who they are."""
    people = {r["id"]: r for r in candidate_experts(conn, department_id=department_id, expert_id=expert_id,
                                                    language=language)}
    cals = calendars(conn, list(people), request.not_before_ms, request.not_after_ms)
    return [{"expert": people[p.expert_id], "start_ms": p.start_ms, "end_ms": p.end_ms}
            for p in slots.propose(cals.values(), request)]


def resolve_department(conn: sa.Connection, name: str) -> int | None:
    """A department's id from any of its names or synonyms (`hq.departments.resolve`), its code (what the
    request form sends) or its id, or None."""
    text = name.strip()
    if not text:
        return None
    if text.isdigit():
        found = conn.execute(sa.select(departments.c.id).where(departments.c.id == int(text))).scalar()
        return None if found is None else int(found)
    resolved = department_names.resolve(conn, text)
    if resolved is not None:
        return resolved
    found = conn.execute(sa.select(departments.c.id).where(departments.c.code == text)).scalar()
    return None if found is None else int(found)


def directory(conn: sa.Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Departments and active experts (with their department's name), for the request forms."""
    d, x = departments, experts
    depts = [dict(r) for r in conn.execute(sa.select(d.c.id, d.c.code, d.c.name).order_by(d.c.name)).mappings()]
    people = [dict(r) for r in conn.execute(
        sa.select(x.c.id, x.c.name, x.c.title, x.c.hospital, x.c.time_zone, x.c.department_id,
                  d.c.name.label("department_name")).join(d, d.c.id == x.c.department_id)
        .where(x.c.active.is_(True)).order_by(x.c.name, x.c.id)).mappings()]
    return depts, people
