"""Rows scheduling tests need besides the directory's (`tests.support.directory`): experts with a console
account in a given time zone, weekly availability rules, a clinic's gateway (so notices have somewhere to go),
patients, staff and department-head accounts, the `hq.auth.Actor` of an account as a request sees it, and
instants from a zone's wall-clock time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hq import accounts, records
from hq.auth import Actor
from hq.clock import now_ms
from hq.models import availability_rules, department_heads, gateways
from tests.support import directory


def expert(conn: sa.Connection, username: str, department_id: int, *, name: str | None = None,
           time_zone: str = "UTC", password: str | None = None) -> tuple[int, int]:
    """An expert with a console account; returns (expert_id, user_id)."""
    display = name or f"Dr. {username.title()}"
    user_id = accounts.create_user(conn, username, "expert", display_name=display, password=password)
    return directory.add_expert(conn, display, department_id, time_zone=time_zone, user_id=user_id), user_id


def at(tz: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    """The instant a clock in `tz` shows that date and time, in Unix ms."""
    return int(datetime(y, mo, d, h, mi, tzinfo=tz).timestamp() * 1000)


def patient(conn: sa.Connection, clinic_id: str, mrn: str, name: str = "Test Patient") -> int:
    directory.add_clinic(conn, clinic_id)
    return records.register_patient(conn, clinic_id, mrn, name=name)


def rule(conn: sa.Connection, expert_id: int, weekday: int, start: str, end: str, slot_minutes: int) -> None:
    conn.execute(availability_rules.insert().values(expert_id=expert_id, weekday=weekday, start_time=start,
                                                    end_time=end, slot_minutes=slot_minutes))


def every_day(conn: sa.Connection, expert_id: int, start: str, end: str, slot_minutes: int) -> None:
    for weekday in range(7):
        rule(conn, expert_id, weekday, start, end, slot_minutes)


def gateway(conn: sa.Connection, gateway_id: str, clinic_id: str, *, online: bool = True) -> str:
    directory.add_clinic(conn, clinic_id)
    conn.execute(gateways.insert().values(id=gateway_id, clinic_id=clinic_id, state="online" if online else "offline",
                                          first_seen_ms=now_ms()))
    return gateway_id


def user(conn: sa.Connection, username: str, role: str, *, clinic_id: str | None = None,
         password: str | None = None) -> int:
    return accounts.create_user(conn, username, role, clinic_id=clinic_id, password=password)


def head(conn: sa.Connection, username: str, department_id: int, *, password: str | None = None) -> int:
    user_id = user(conn, username, "department_head", password=password)
    conn.execute(department_heads.insert().values(department_id=department_id, user_id=user_id))
    return user_id


def actor(conn: sa.Connection, username: str) -> Actor:
    found = accounts.user_by_name(conn, username)
    assert found is not None, f"no user {username}"
    return Actor.of(accounts.identity(conn, found))
