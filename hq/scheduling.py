"""Scheduling over the database: experts' published availability and exceptions, who is available now,
proposals for a clinic's request, booking that can never double-book, cancellation, rescheduling, urgent
extra slots approved by a department head, confirmations and reminders to the clinic's gateway.

Synchronous functions over a connection (run them in a thread); the slot arithmetic is `hq.slots` (pure),
the pages and API are `hq.console.schedule`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from hq import slots
from hq.models import appointments, availability_exceptions, availability_rules, experts

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


def _rules(conn: sa.Connection, chunk: list[int], into: dict[int, list[Any]]) -> None:
    r = availability_rules
    for row in conn.execute(sa.select(r).where(r.c.expert_id.in_(chunk)).order_by(r.c.id)):
        into.setdefault(int(row.expert_id), []).append(row)


def _zones(conn: sa.Connection, expert_ids: Sequence[int]) -> dict[int, tuple[str, int]]:
    found: dict[int, tuple[str, int]] = {}
    for chunk in _chunks(expert_ids):
        for row in conn.execute(sa.select(experts.c.id, experts.c.time_zone, experts.c.daily_cap)
                                .where(experts.c.id.in_(chunk))):
            found[int(row.id)] = (row.time_zone, int(row.daily_cap))
    return found


def calendars(conn: sa.Connection, expert_ids: Iterable[int], from_ms: int, to_ms: int, *,
              exclude_appointment: int | None = None) -> dict[int, slots.Calendar]:
    """The experts' calendars with what matters for slots starting in [from_ms, to_ms): rules, exceptions,
    appointments holding time, and appointments per local day (for the daily cap). Experts whose stored
    time zone is unknown to this machine are left out (and logged)."""
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
            a.c.expert_id.in_(chunk), a.c.status.in_(ACTIVE_STATUSES), a.c.start_ms < hi, a.c.end_ms > lo)
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


def available_now(conn: sa.Connection, expert_ids: Iterable[int], at_ms: int) -> set[int]:
    """The experts who at `at_ms` are inside a published availability window, not on leave or clinic duty
    and not in a booked appointment (for matching emergencies: who can take a call now)."""
    ids = sorted(set(expert_ids))
    if not ids:
        return set()
    x, a = availability_exceptions, appointments
    zones = _zones(conn, ids)
    rules: dict[int, list[Any]] = {}
    away: set[int] = set()
    for chunk in _chunks(ids):
        _rules(conn, chunk, rules)
        away.update(int(e) for e in conn.execute(sa.select(x.c.expert_id).where(
            x.c.expert_id.in_(chunk), x.c.starts_ms <= at_ms, x.c.ends_ms > at_ms)).scalars())
        away.update(int(e) for e in conn.execute(sa.select(a.c.expert_id).where(
            a.c.expert_id.in_(chunk), a.c.status == "booked", a.c.start_ms <= at_ms, a.c.end_ms > at_ms)).scalars())
    available: set[int] = set()
    for expert_id, expert_rules in rules.items():
        if expert_id in away or expert_id not in zones:
            continue
        try:
            tz = slots.zone(zones[expert_id][0])
        except slots.RuleError as exc:
            log.warning("expert %d has no usable time zone, treated as unavailable: %s", expert_id, exc)
            continue
        if slots.available_at(slots.Calendar(expert_id, tz, rules_from_rows(expert_rules)), at_ms):
            available.add(expert_id)
    return available
