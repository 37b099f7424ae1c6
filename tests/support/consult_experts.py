"""Experts for consultation tests and the dispatch benchmark: a console account each, a directory entry
(`tests.support.directory`) and availability around the clock, so matching finds them available now."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from hq import accounts, db
from hq.models import expert_tags
from tests.support import directory
from tests.support.accounts import PASSWORD


def add_expert_with_account(conn: sa.Connection, username: str, department_id: int, *, name: str | None = None,
                            tags: Sequence[str] = (), daily_cap: int = 20, available: bool = True) -> tuple[int, int]:
    """(expert_id, user_id) of an expert who can log in with tests.support.accounts.PASSWORD."""
    display = name or f"Dr. {username.title()}"
    user_id = accounts.create_user(conn, username, "expert", display_name=display, password=PASSWORD)
    expert_id = directory.add_expert(conn, display, department_id, user_id=user_id, daily_cap=daily_cap,
                                     languages=("zh", "en"))
    for tag in tags:
        conn.execute(expert_tags.insert().values(expert_id=expert_id, tag=tag))
    if available:
        directory.every_day(conn, expert_id, "00:00", "24:00", 30)
    return expert_id, user_id


def seed_experts(db_url: str, usernames: Sequence[str], *, department: str = "emergency",
                 clinic_id: str | None = None) -> dict[str, tuple[int, int]]:
    """Experts (and the clinic, if given) in a database HQ has migrated; username -> (expert_id, user_id)."""
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            if clinic_id is not None:
                directory.add_clinic(conn, clinic_id)
            dept = directory.add_department(conn, department)
            return {u: add_expert_with_account(conn, u, dept) for u in usernames}
    finally:
        engine.dispose()
