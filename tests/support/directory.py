"""Clinics, departments and experts for tests and benchmarks, written straight into HQ's tables (the rows
the expert directory would hold), plus their availability rules."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from hq.clock import now_ms
from hq.models import availability_rules, clinics, departments, experts


def add_clinic(conn: sa.Connection, clinic_id: str, name: str | None = None) -> str:
    if conn.execute(sa.select(clinics.c.id).where(clinics.c.id == clinic_id)).first() is None:
        conn.execute(clinics.insert().values(id=clinic_id, name=name or clinic_id))
    return clinic_id


def add_department(conn: sa.Connection, code: str, name: str | None = None) -> int:
    found = conn.execute(sa.select(departments.c.id).where(departments.c.code == code)).scalar()
    if found is not None:
        return int(found)
    result = conn.execute(departments.insert().values(code=code, name=name or code.title()))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_expert(conn: sa.Connection, name: str, department_id: int, *, time_zone: str = "UTC",
               user_id: int | None = None, daily_cap: int = 8, languages: Iterable[str] = ("en",),
               active: bool = True) -> int:
    now = now_ms()
    result = conn.execute(experts.insert().values(
        name=name, department_id=department_id, time_zone=time_zone, user_id=user_id, daily_cap=daily_cap,
        languages=list(languages), active=active, created_ms=now, profile_updated_ms=now))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_rule(conn: sa.Connection, expert_id: int, weekday: int, start: str, end: str, slot_minutes: int) -> None:
    conn.execute(availability_rules.insert().values(expert_id=expert_id, weekday=weekday, start_time=start,
                                                    end_time=end, slot_minutes=slot_minutes))


def every_day(conn: sa.Connection, expert_id: int, start: str, end: str, slot_minutes: int) -> None:
    for weekday in range(7):
        add_rule(conn, expert_id, weekday, start, end, slot_minutes)
