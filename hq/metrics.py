"""Consultation metrics: volume, response time (median, p90), duration, rating and advice adoption, overall or
by clinic, expert, department, hour of day, weekday or kind, and the demand heat map (weekday x hour), all by
SQL aggregation over `consultations` so that a year of them is summarised in the database.

Definitions. A consultation counts in the window by `requested_ms` (the clinic's request: demand). Response
time: `accepted_ms - received_ms`, from HQ holding the request to an expert taking it (the time HQ and the
experts answer for; a clinic's offline queueing is before `received_ms`), urgent and emergency consultations
only (routine ones are booked ahead). Duration: `ended_ms - started_ms`. Median (mean of the middle one or
two) and p90 (nearest rank) are of whole seconds; the mean duration is exact. Hours and weekdays are local to
the chosen time zone, daylight saving included (the zone's offsets over the window are folded into the SQL).
Reads only; role scoping is the caller's `Scope`; CSV for export.
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from hq.clock import iso_from_ms
from hq.models import clinics, consultations, departments, experts
from hq.query_params import ISO_EXPECTED, ParamError, parse_instant
from hq.sql_stats import percentiles_by_group, whole_seconds

DIMENSIONS = ("none", "clinic", "expert", "department", "hour", "weekday", "kind")
KINDS = ("routine", "urgent", "emergency")
DONE = ("reported", "closed")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
DEFAULT_DAYS = 30
MAX_DAYS = 800
PARAMETERS = ("by", "since", "until", "kind", "clinic_id", "department_id", "expert_id", "tz")


@dataclass(frozen=True, slots=True)
class Scope:
    """What the asker may count: None for everything. From the role (`hq.console.metrics`)."""

    clinic_id: str | None = None
    department_ids: frozenset[int] | None = None
    expert_id: int | None = None


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    since_ms: int
    until_ms: int
    time_zone: str
    by: str = "none"
    kind: str | None = None
    clinic_id: str | None = None
    department_id: int | None = None
    expert_id: int | None = None


def parse_query(params: Mapping[str, str], *, now_ms: int, default_zone: str) -> MetricsQuery:
    for name in params:
        if name not in PARAMETERS:
            raise ParamError(name, f"unknown parameter {name!r}", "one of " + ", ".join(PARAMETERS))
    zone_name = params.get("tz", "").strip() or default_zone
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ParamError("tz", f"{zone_name!r} is not a known time zone", "an IANA time zone such as "
                         "Asia/Shanghai") from None
    until = _moment(params, "until", zone, end=True) or now_ms
    since = _moment(params, "since", zone, end=False) or until - DEFAULT_DAYS * DAY_MS
    if since >= until:
        raise ParamError("until", "until is not after since", "a time after since")
    if until - since > MAX_DAYS * DAY_MS:
        raise ParamError("since", f"the window is longer than {MAX_DAYS} days", f"at most {MAX_DAYS} days")
    by = params.get("by", "none").strip() or "none"
    if by not in DIMENSIONS:
        raise ParamError("by", f"unknown grouping {by!r}", "one of " + ", ".join(DIMENSIONS))
    kind = params.get("kind", "").strip() or None
    if kind is not None and kind not in KINDS:
        raise ParamError("kind", f"unknown kind {kind!r}", "one of " + ", ".join(KINDS))
    return MetricsQuery(since, until, zone_name, by, kind, params.get("clinic_id", "").strip() or None,
                        _id(params, "department_id"), _id(params, "expert_id"))


def _moment(params: Mapping[str, str], name: str, zone: zoneinfo.ZoneInfo, *, end: bool) -> int | None:
    """A date (the day's start in the zone; `until` a date: the end of that day) or an ISO 8601 date-time."""
    text = params.get(name, "").strip()
    if not text:
        return None
    if "T" not in text.upper():
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise ParamError(name, f"{text!r} is neither a date nor a date-time", f"YYYY-MM-DD or {ISO_EXPECTED}"
                             ) from None
        start = datetime.combine(day + timedelta(days=1) if end else day, time(), zone)
        return int(start.timestamp() * 1000)
    return parse_instant({name: text}, name)


def _id(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit():
        raise ParamError(name, f"{text!r} is not an id", "a whole number")
    return int(text)


# ---- local time in SQL --------------------------------------------------------------------------
def offsets(zone: zoneinfo.ZoneInfo, since_ms: int, until_ms: int) -> list[tuple[int, int]]:
    """[(from_ms, utc offset ms)] covering the window, one entry per change of the zone's offset."""
    def offset_at(ms: int) -> int:
        delta = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone).utcoffset()
        return 0 if delta is None else int(delta.total_seconds() * 1000)

    found = [(since_ms, offset_at(since_ms))]
    t = since_ms - since_ms % HOUR_MS + HOUR_MS
    while t <= until_ms:
        current = offset_at(t)
        if current != found[-1][1]:
            low, high = t - HOUR_MS, t  # the change happened within this hour: find its minute
            while high - low > 60_000:
                middle = (low + high) // 2 // 60_000 * 60_000
                if middle <= low:
                    break
                low, high = (middle, high) if offset_at(middle) == found[-1][1] else (low, middle)
            found.append((high, current))
        t += HOUR_MS
    return found


def local_ms(column: sa.ColumnElement[int], zone_name: str, since_ms: int, until_ms: int) -> sa.ColumnElement[int]:
    """`column` (UTC ms) as local wall-clock ms in the zone: the offset in force at each moment."""
    changes = offsets(zoneinfo.ZoneInfo(zone_name), since_ms, until_ms)
    if len(changes) == 1:
        return column + changes[0][1]
    whens = [(column < changes[i + 1][0], column + changes[i][1]) for i in range(len(changes) - 1)]
    return sa.case(*whens, else_=column + changes[-1][1])


def hour_of_day(local: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    return (local // HOUR_MS) % 24


def weekday(local: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    # 1970-01-01, day 0, was a Thursday: Monday is 0.
    return (local // DAY_MS + 3) % 7


# ---- the figures --------------------------------------------------------------------------------
def _base(query: MetricsQuery, scope: Scope) -> sa.Select[Any]:
    c = consultations
    local = local_ms(c.c.requested_ms, query.time_zone, query.since_ms, query.until_ms)
    # Keys are expressions (`|| ''`, `+ 0`), not bare columns: otherwise SQLite groups by walking the key's index
    # and looks every consultation up from it, seconds instead of one pass over the table.
    keys: dict[str, sa.ColumnElement[Any]] = {
        "none": sa.literal("all"), "clinic": c.c.clinic_id + "", "expert": c.c.expert_id + 0,
        "department": c.c.department_id + 0, "hour": hour_of_day(local), "weekday": weekday(local),
        "kind": c.c.kind + ""}
    response = sa.case((sa.and_(c.c.kind != "routine", c.c.accepted_ms.is_not(None)),
                        whole_seconds(c.c.accepted_ms, c.c.received_ms)))
    has_duration = sa.and_(c.c.started_ms.is_not(None), c.c.ended_ms.is_not(None))
    q = sa.select(keys[query.by].label("key"), response.label("response_s"),
                  sa.case((has_duration, whole_seconds(c.c.ended_ms, c.c.started_ms))).label("duration_s"),
                  sa.case((has_duration, c.c.ended_ms - c.c.started_ms)).label("duration_ms"),
                  c.c.status, c.c.rating, c.c.advice_adopted) \
        .where(c.c.requested_ms >= query.since_ms, c.c.requested_ms < query.until_ms)
    for column, value in ((c.c.kind, query.kind), (c.c.clinic_id, query.clinic_id),
                          (c.c.department_id, query.department_id), (c.c.expert_id, query.expert_id),
                          (c.c.clinic_id, scope.clinic_id), (c.c.expert_id, scope.expert_id)):
        if value is not None:
            q = q.where(column == value)
    if scope.department_ids is not None:
        q = q.where(c.c.department_id.in_(sorted(scope.department_ids)))
    return q


@dataclass(slots=True)
class Row:
    key: Any
    label: str
    volume: int = 0
    done: int = 0
    cancelled: int = 0
    responses: int = 0
    response_median_s: float | None = None
    response_p90_s: float | None = None
    duration_median_s: float | None = None
    duration_p90_s: float | None = None
    duration_mean_s: float | None = None
    durations: int = 0
    ratings: int = 0
    rating_avg: float | None = None
    adoption_answers: int = 0
    adopted: int = 0

    @property
    def adoption_rate(self) -> float | None:
        return None if not self.adoption_answers else self.adopted / self.adoption_answers

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "volume": self.volume, "done": self.done,
                "cancelled": self.cancelled, "responses": self.responses,
                "response_median_s": self.response_median_s, "response_p90_s": self.response_p90_s,
                "duration_median_s": self.duration_median_s, "duration_p90_s": self.duration_p90_s,
                "duration_mean_s": self.duration_mean_s, "ratings": self.ratings, "rating_avg": self.rating_avg,
                "adoption_answers": self.adoption_answers, "adopted": self.adopted,
                "adoption_rate": self.adoption_rate}


@dataclass(slots=True)
class Report:
    query: MetricsQuery
    rows: list[Row] = field(default_factory=list)
    total: Row = field(default_factory=lambda: Row("all", "all"))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def compute(conn: sa.Connection, query: MetricsQuery, scope: Scope) -> Report:
    """The figures per group and for everything in the window: a counting statement and one per percentile
    family, each one pass over the window's consultations (the total's counts are the groups' sums; its
    percentiles are not, and take two more passes)."""
    base = _base(query, scope).subquery("base")
    rows = _counts(conn, base)
    _percentiles(conn, base, rows)
    if query.by == "none":
        total = next(iter(rows.values()), Row("all", "all"))
    else:
        total = _sum(rows.values())
        _percentiles(conn, _base(replace(query, by="none"), scope).subquery("base"), {"all": total})
    _label(conn, query.by, rows)
    return Report(query, sorted(rows.values(), key=lambda row: _order(query.by, row)), total)


def _counts(conn: sa.Connection, base: sa.Subquery) -> dict[Any, Row]:
    b = base.c
    counts = sa.select(
        b.key, sa.func.count().label("volume"),
        sa.func.sum(sa.case((b.status.in_(DONE), 1), else_=0)).label("done"),
        sa.func.sum(sa.case((b.status == "cancelled", 1), else_=0)).label("cancelled"),
        sa.func.count(b.response_s).label("responses"), sa.func.count(b.duration_ms).label("durations"),
        sa.func.avg(b.duration_ms / 1000.0).label("duration_mean_s"),
        sa.func.count(b.rating).label("ratings"), sa.func.avg(b.rating).label("rating_avg"),
        sa.func.count(b.advice_adopted).label("adoption_answers"),
        sa.func.sum(sa.case((b.advice_adopted.is_(True), 1), else_=0)).label("adopted")).group_by(b.key)
    rows: dict[Any, Row] = {}
    for f in conn.execute(counts).mappings().all():
        rows[f["key"]] = Row(f["key"], str(f["key"]), int(f["volume"]), int(f["done"] or 0), int(f["cancelled"] or 0),
                             int(f["responses"]), durations=int(f["durations"]),
                             duration_mean_s=_float(f["duration_mean_s"]), ratings=int(f["ratings"]),
                             rating_avg=_float(f["rating_avg"]), adoption_answers=int(f["adoption_answers"]),
                             adopted=int(f["adopted"] or 0))
    return rows


def _percentiles(conn: sa.Connection, base: sa.Subquery, rows: dict[Any, Row]) -> None:
    """Each group's response and duration percentiles."""
    for value, prefix in (("response_s", "response"), ("duration_s", "duration")):
        for f in conn.execute(percentiles_by_group(base, ["key"], value, [50, 90])).mappings().all():
            row = rows.get(f["key"])
            if row is not None:
                setattr(row, f"{prefix}_median_s", _float(f["p50"]))
                setattr(row, f"{prefix}_p90_s", _float(f["p90"]))


def _weighted(pairs: list[tuple[float | None, int]]) -> float | None:
    weight = sum(n for v, n in pairs if v is not None)
    return None if not weight else sum(v * n for v, n in pairs if v is not None) / weight


def _sum(rows: Iterable[Row]) -> Row:
    rows = list(rows)
    return Row("all", "all", sum(r.volume for r in rows), sum(r.done for r in rows), sum(r.cancelled for r in rows),
               sum(r.responses for r in rows), durations=sum(r.durations for r in rows),
               duration_mean_s=_weighted([(r.duration_mean_s, r.durations) for r in rows]),
               ratings=sum(r.ratings for r in rows), rating_avg=_weighted([(r.rating_avg, r.ratings) for r in rows]),
               adoption_answers=sum(r.adoption_answers for r in rows), adopted=sum(r.adopted for r in rows))


def _order(by: str, row: Row) -> tuple[Any, ...]:
    if by in ("hour", "weekday"):
        return (int(row.key),)
    return (row.key is None, -row.volume, row.label)


def _label(conn: sa.Connection, by: str, rows: dict[Any, Row]) -> None:
    keys = [k for k in rows if k is not None]
    names: dict[Any, str] = {}
    if by == "clinic" and keys:
        names = dict(conn.execute(sa.select(clinics.c.id, clinics.c.name).where(clinics.c.id.in_(keys))).all())
    elif by == "expert" and keys:
        names = dict(conn.execute(sa.select(experts.c.id, experts.c.name).where(experts.c.id.in_(keys))).all())
    elif by == "department" and keys:
        names = dict(conn.execute(sa.select(departments.c.id, departments.c.name)
                                  .where(departments.c.id.in_(keys))).all())
    for key, row in rows.items():
        if by == "hour":
            row.key = int(key)
            row.label = f"{int(key):02d}:00"
        elif by == "weekday":
            row.key = int(key)
            row.label = WEEKDAYS[int(key)]
        elif key is None:
            row.label = {"expert": "not taken by an expert", "department": "no department"}.get(by, "none")
        else:
            row.label = str(names.get(key, key))


def heatmap(conn: sa.Connection, query: MetricsQuery, scope: Scope) -> list[list[int]]:
    """Requests per weekday (rows, Monday first) and local hour (columns): where demand peaks."""
    c = consultations
    local = local_ms(c.c.requested_ms, query.time_zone, query.since_ms, query.until_ms)
    # Grouped by the subquery's columns: PostgreSQL cannot tell that two copies of a parameterised
    # expression in SELECT and GROUP BY are the same.
    cells = _base(query, scope).with_only_columns(weekday(local).label("weekday"), hour_of_day(local).label("hour")
                                                  ).subquery("cells")
    grid = [[0] * 24 for _ in range(7)]
    for day, hour, n in conn.execute(sa.select(cells.c.weekday, cells.c.hour, sa.func.count())
                                     .group_by(cells.c.weekday, cells.c.hour)).all():
        grid[int(day)][int(hour)] = int(n)
    return grid


CSV_COLUMNS = ("key", "label", "volume", "done", "cancelled", "responses", "response_median_s", "response_p90_s",
               "duration_median_s", "duration_p90_s", "duration_mean_s", "ratings", "rating_avg", "adoption_answers",
               "adopted", "adoption_rate")
CSV_CONTEXT = ("by", "since", "until", "time_zone", "kind")  # on every row: an exported file explains itself


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    q = report.query
    context = [q.by, iso(q.since_ms), iso(q.until_ms), q.time_zone, q.kind or "all"]
    writer.writerow([*CSV_COLUMNS, *CSV_CONTEXT])
    for row in [*report.rows, *([report.total] if q.by != "none" else [])]:
        shown = row.to_json()
        writer.writerow(["" if shown[c] is None else round(shown[c], 3) if isinstance(shown[c], float) else shown[c]
                         for c in CSV_COLUMNS] + context)
    return out.getvalue()


def iso(ms: int) -> str:
    return iso_from_ms(ms) or ""


def scaled(grid: Sequence[Sequence[int]], levels: int = 10) -> list[list[int]]:
    """Each cell's share of the busiest cell as a level 0..levels-1 (0: no request at all)."""
    peak = max((n for row in grid for n in row), default=0)
    return [[0 if n == 0 or peak == 0 else max(1, min(levels - 1, round(n / peak * (levels - 1)))) for n in row]
            for row in grid]
