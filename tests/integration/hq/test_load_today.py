"""`hq.dispatching.load_today` against SQLite and PostgreSQL: consultations each expert took since midnight of
their own day, and the daily cap it enforces in `hq.experts.candidates` turning over at the expert's midnight."""

from __future__ import annotations

import itertools
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hq import dispatching, experts, scheduling
from hq.matching import MatchRequest
from hq.models import consultations
from hq.models import experts as experts_table
from tests.support import directory
from tests.support.schedule_rows import at

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
_numbers = itertools.count(1)


def took(conn: sa.Connection, expert_id: int, department_id: int, accepted_ms: int, status: str = "closed") -> None:
    conn.execute(consultations.insert().values(
        public_id=f"load-{next(_numbers)}", kind="emergency", status=status, clinic_id="clinic-a",
        department_id=department_id, expert_id=expert_id, requested_ms=accepted_ms - 60_000,
        received_ms=accepted_ms - 59_000, accepted_ms=accepted_ms))


def test_load_counts_since_each_experts_own_midnight(engine: sa.Engine) -> None:
    now = at(SHANGHAI, 2026, 1, 6, 9, 0)  # Tuesday 09:00 in Shanghai = Monday 20:00 in New York
    with engine.begin() as conn:
        directory.add_clinic(conn, "clinic-a")
        dept = directory.add_department(conn, "capped")
        shanghai = directory.add_expert(conn, "Shanghai", dept, time_zone="Asia/Shanghai")
        new_york = directory.add_expert(conn, "New York", dept, time_zone="America/New_York")
        unknown = directory.add_expert(conn, "Unknown zone", dept, time_zone="Mars/Olympus_Mons")
        idle = directory.add_expert(conn, "Idle", dept, time_zone="Asia/Shanghai")
        took(conn, shanghai, dept, at(SHANGHAI, 2026, 1, 6, 0, 0))  # at midnight: today
        took(conn, shanghai, dept, at(SHANGHAI, 2026, 1, 6, 8, 0))
        took(conn, shanghai, dept, at(SHANGHAI, 2026, 1, 5, 23, 59))  # yesterday
        took(conn, shanghai, dept, at(SHANGHAI, 2026, 1, 6, 8, 30), status="cancelled")
        took(conn, new_york, dept, at(NEW_YORK, 2026, 1, 5, 1, 0))  # Shanghai's yesterday, New York's today
        took(conn, new_york, dept, at(NEW_YORK, 2026, 1, 4, 23, 0))
        took(conn, unknown, dept, at(SHANGHAI, 2026, 1, 6, 7, 59))  # 23:59 UTC on the 5th: yesterday in UTC
        took(conn, unknown, dept, at(SHANGHAI, 2026, 1, 6, 8, 0))  # 00:00 UTC on the 6th: today in UTC
    with engine.connect() as conn:
        assert dispatching.load_today(conn, [shanghai, new_york, unknown, idle], now) == {
            shanghai: 2, new_york: 1, unknown: 1}
        assert dispatching.load_today(conn, [new_york], now) == {new_york: 1}
        assert dispatching.load_today(conn, [], now) == {}
        assert dispatching.load_today(conn, [999_999], now) == {}


def test_a_capped_expert_is_a_candidate_again_from_their_own_midnight(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        directory.add_clinic(conn, "clinic-a")
        capped = experts.create_expert(conn, {"name": "Dr. Cap", "department": "Cardiology", "daily_cap": 2,
                                              "time_zone": "America/New_York"}, now_ms=0)
        dept = conn.execute(sa.select(experts_table.c.department_id).where(experts_table.c.id == capped)).scalar_one()
        took(conn, capped, dept, at(NEW_YORK, 2026, 1, 5, 23, 0))
        took(conn, capped, dept, at(NEW_YORK, 2026, 1, 5, 23, 30))
    request = MatchRequest(dept)

    def candidate_ids(now: int) -> set[int]:
        with engine.connect() as conn:
            found = experts.candidates(conn, request, now_ms=now,
                                       available_now=lambda ids: scheduling.available_now(conn, ids, now),
                                       load_today=lambda ids: dispatching.load_today(conn, ids, now))
        return {c.expert_id for c in found}

    assert candidate_ids(at(NEW_YORK, 2026, 1, 5, 23, 59)) == set()  # two taken today: at the cap of 2
    assert candidate_ids(at(NEW_YORK, 2026, 1, 6, 0, 0)) == {capped}  # a new day in New York
    with engine.begin() as conn:
        took(conn, capped, dept, at(NEW_YORK, 2026, 1, 6, 0, 0))
    assert candidate_ids(at(NEW_YORK, 2026, 1, 6, 0, 1)) == {capped}  # one of two
