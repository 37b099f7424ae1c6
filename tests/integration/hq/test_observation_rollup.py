"""The observation rollup on SQLite and PostgreSQL: readings HQ holds completely are summed once per day and
metric, alarms and gaps copied out, unknown device patient ids get a provisional record; the timeline shows
the same figures before and after the rollup (rollups + the unsummed tail), and a range is summed only once
even when two workers try."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hq import observation_rollup, records
from hq.models import audit_log, observation_highlights, observation_rollups, patients, rollup_progress
from hq.observation_rollup import Chunk, RollupStats
from hq.patient_timeline import snapshot
from tests.integration.hq.records_support import T0, add_gateway, add_readings, schema_engine

SPO2, PULSE = "MDC_PULS_OXIM_SAT_O2", "MDC_PULS_OXIM_PULS_RATE"
HOUR = 3_600_000


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    with schema_engine(db_url) as e:
        yield e


def seed(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        pid = records.register_patient(conn, "clinic-a", "A-1", name="Rolled Up", now=T0)
        add_gateway(conn, "gw-a", "clinic-a")
        rows = [(seq, "observation", SPO2 if seq % 2 else PULSE, 90.0 + seq % 7, T0 + seq * 600_000)
                for seq in range(1, 201)]  # 200 readings, 10 minutes apart: 34 hours
        add_readings(conn, "gw-a", "clinic-a", "A-1", rows)
        add_readings(conn, "gw-a", "clinic-a", "A-1", [(201, "alarm", SPO2, 84.0, T0 + 5 * HOUR)],
                     extra={"alarm": {"text": "SpO2 low", "priority": "high", "state": "active"}})
        add_readings(conn, "gw-a", "clinic-a", "A-1", [(202, "gap", "MDC_PULS_OXIM_SAT_O2", 12.0, T0 + 6 * HOUR)],
                     extra={"count": 12, "from_ms": T0 + 6 * HOUR, "to_ms": T0 + 7 * HOUR, "reason": "quota"})
        add_readings(conn, "gw-a", "clinic-a", "DEV-9", [(203, "observation", SPO2, 97.0, T0 + HOUR)])
        add_readings(conn, "gw-a", "clinic-a", None, [(204, "event", "DEVICE_STATUS", None, T0 + HOUR)])
    return pid


def view(engine: sa.Engine, pid: int) -> dict[str, object]:
    with snapshot(engine) as conn:
        doc = records.timeline(conn, pid, since_ms=T0 - HOUR, until_ms=T0 + 40 * HOUR).to_json()
    assert isinstance(doc, dict)
    return doc


def test_rollup_sums_once_and_the_timeline_agrees_before_and_after(engine: sa.Engine) -> None:
    pid = seed(engine)
    before = view(engine, pid)
    stats = RollupStats()
    observation_rollup.roll_all(engine, chunk_rows=50, stats=stats)
    assert stats.chunks == 5 and stats.rows == 203 and stats.provisional_patients == 1
    after = view(engine, pid)
    assert after == before
    days = {d["day"]: d for d in after["vitals_by_day"]}  # type: ignore[union-attr]
    assert sum(m["count"] for d in days.values() for m in d["metrics"]) == 200
    assert sum(d["alarms"] for d in days.values()) == 1 and sum(d["gaps"] for d in days.values()) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(rollup_progress.c.rolled_below)).scalar() == 205
        assert conn.execute(sa.select(sa.func.sum(observation_rollups.c.count))).scalar() == 203
        first_day = conn.execute(sa.select(observation_rollups).where(
            observation_rollups.c.patient_key == "A-1", observation_rollups.c.metric == SPO2,
            observation_rollups.c.kind == "observation", observation_rollups.c.day_ms == T0)).mappings().one()
        # the odd seqs 1..143 fall on the first day (every 10 minutes): 72 readings of 90 + seq % 7
        odd = [90.0 + s % 7 for s in range(1, 144, 2)]
        assert (first_day["count"], first_day["value_min"], first_day["value_max"], first_day["value_sum"],
                first_day["first_ms"], first_day["last_ms"]) == (
            72, min(odd), max(odd), sum(odd), T0 + 600_000, T0 + 143 * 600_000)
        assert sorted(conn.execute(sa.select(observation_highlights.c.kind)).scalars()) == ["alarm", "gap"]
        unknown = records.patient_for_mrn(conn, "clinic-a", "DEV-9")
        assert unknown is not None
        row = conn.execute(sa.select(patients).where(patients.c.id == unknown)).mappings().one()
        assert row["origin"] == "device"
        assert conn.execute(sa.select(audit_log.c.action).where(audit_log.c.target_id == str(unknown))).scalars() \
            .all() == ["patient.register"]
    # nothing more to do, and nothing is summed twice
    assert observation_rollup.roll_all(engine, chunk_rows=50, stats=stats) == 0


def test_new_readings_after_a_rollup_come_from_the_tail_then_from_the_sums(engine: sa.Engine) -> None:
    pid = seed(engine)
    observation_rollup.roll_all(engine, chunk_rows=10_000, stats=RollupStats())
    with engine.begin() as conn:
        add_readings(conn, "gw-a", "clinic-a", "A-1", [(205, "observation", SPO2, 50.0, T0 + 100)])
    total = sum(m["count"] for d in view(engine, pid)["vitals_by_day"] for m in d["metrics"])  # type: ignore[union-attr,index]
    assert total == 201
    observation_rollup.roll_all(engine, chunk_rows=10_000, stats=RollupStats())
    doc = view(engine, pid)
    assert sum(m["count"] for d in doc["vitals_by_day"] for m in d["metrics"]) == 201  # type: ignore[union-attr,index]
    first = next(d for d in doc["vitals_by_day"] if d["day"] == "2025-12-01")  # type: ignore[union-attr]
    assert min(m["min"] for m in first["metrics"]) == 50.0


def test_a_range_is_summed_by_one_worker_only(engine: sa.Engine) -> None:
    seed(engine)
    chunk = Chunk("gw-a", 1, 101)
    first, second = RollupStats(), RollupStats()
    observation_rollup.roll_chunk(engine, chunk, first)
    observation_rollup.roll_chunk(engine, chunk, second)  # the other worker read the same range meanwhile
    assert (first.chunks, second.chunks, second.conflicts) == (1, 0, 1)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(observation_rollups.c.count))).scalar() == 100


def test_readings_above_complete_below_wait(engine: sa.Engine) -> None:
    seed(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE gateways SET complete_below = 101 WHERE id = 'gw-a'"))
    observation_rollup.roll_all(engine, chunk_rows=10_000, stats=RollupStats())
    with engine.connect() as conn:
        assert conn.execute(sa.select(rollup_progress.c.rolled_below)).scalar() == 101
        assert conn.execute(sa.select(sa.func.sum(observation_rollups.c.count))).scalar() == 100
