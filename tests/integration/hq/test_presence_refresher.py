"""A running HQ keeps experts' precomputed free windows (`hq.presence`) fresh: it computes them after it starts
and again soon after a change made them stale, and says so in its metrics."""

from __future__ import annotations

import asyncio
import re

import sqlalchemy as sa

from hq import db
from hq.clock import now_ms
from hq.models import availability_exceptions, expert_presence
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.support import directory, schedule_rows
from tests.support.mosquitto import Mosquitto


async def refreshed_total(hq: RunningHq) -> int:
    text = await (await hq.http.get(hq.url + "/metrics")).text()
    found = re.search(r"^hq_presence_refreshed_total (\d+)$", text, re.M)
    assert found, "the refresher's figures are in /metrics"
    return int(found.group(1))


def fresh_until(engine: sa.Engine, expert_id: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(expert_presence.c.until_ms).where(
            expert_presence.c.expert_id == expert_id)).scalar_one_or_none() or 0)


async def becomes_fresh(engine: sa.Engine, expert_id: int, timeout_s: float = 10.0) -> bool:
    for _ in range(int(timeout_s * 10)):
        if fresh_until(engine, expert_id) > now_ms():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_hq_refreshes_free_windows_at_start_and_after_a_change(broker: Mosquitto, sqlite_url: str) -> None:
    engine = db.create_engine_for(sqlite_url)
    db.upgrade_schema(engine)
    with engine.begin() as conn:
        dept = directory.add_department(conn, "cardiology")
        expert_id = schedule_rows.expert(conn, "drli", dept, time_zone="Asia/Shanghai")[0]
        schedule_rows.every_day(conn, expert_id, "00:00", "24:00", 30)
    try:
        async with running_hq(hq_config(broker, sqlite_url, "[scheduling]\npresence_refresh_s = 0.2\n")) as hq:
            assert await becomes_fresh(engine, expert_id), "computed after HQ started"
            before = await refreshed_total(hq)
            assert before >= 1
            with engine.begin() as conn:
                conn.execute(availability_exceptions.insert().values(
                    expert_id=expert_id, starts_ms=now_ms(), ends_ms=now_ms() + 3_600_000, kind="leave",
                    created_ms=now_ms()))
            assert fresh_until(engine, expert_id) == 0, "stale at once"
            assert await becomes_fresh(engine, expert_id), "computed again after the change"
            assert await refreshed_total(hq) == before + 1
    finally:
        engine.dispose()
