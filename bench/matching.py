"""Matching experts for a consultation over a directory of 10,000 experts: `hq.experts.candidates` reading the
database (a pooled connection, the SQL, the rows into candidates) plus `hq.matching.rank`, timed together and
apart, on SQLite and on PostgreSQL.

The request is for the largest department (about 1,200 of the 10,000 experts), with two skills and a language:
the worst department. `any_department` asks with no department (an emergency before its short form: every
active expert is a candidate). The availability and load callables are in-memory stand-ins (sets and dicts
built beforehand): they are the scheduling and consultations engineers' functions and are timed apart
(`callables`) so that their cost is not hidden in, or blamed on, matching.

Prints, per database: match_experts_p50_ms, match_experts_p99_ms (target <= 20 ms), the same in this thread's
CPU time (`_cpu_`: on a shared machine wall-clock tails measure the neighbours as much as the code; with
PostgreSQL the server's share is not in it), candidates_p99_ms, rank_p99_ms, callables_p99_ms,
candidates_count; the same with the prefix any_department_, and with unfrozen_heap_ for the department request
in a process with Python's default collector settings (HQ freezes its start-up heap and makes young passes rarer,
`hq.heap.settle`: full collections walking the heap in the middle of requests were the tail).
Then, with availability rules for everyone, a month of consultations and a year of leave and appointments, at a
weekday's mid-morning, the same department request with the real callables (scheduling's `available_now`, the
consultations' `load_today`; ranked for the best `offers_per_round`, as `hq.dispatching.rank` does), which is what
a dispatch costs:
- after HQ's presence refresher (`hq.presence`) computed everyone's free windows, as it keeps them in a running
  HQ (presence_refresh_10000_ms: what computing all of them costs, in the background):
  real_callables_match_experts_p50_ms / _p99_ms and real_callables_p99_ms;
- the same with every expert's windows stale (just after HQ started on a new database, or when everyone's rules
  changed at once: `available_now` works them out from the rules): rules_only_...;
and the two callables asked about the whole directory (available_now_10000_ms_*, load_today_10000_ms_*: an
emergency with every expert a candidate). The headline `match_experts_p99_ms` is SQLite's (HQ's default
database) with the real callables and fresh windows, wall clock; `available_now_10000_ms` likewise.
Environment: MATCH_EXPERTS (10000), MATCH_ROUNDS (300), MATCH_ONLY (sqlite|postgres).
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bench.databases import load_line, on_each_database
from hq import db, experts, heap
from hq.clock import now_ms
from hq.config import ConsultationsSection
from hq.matching import MatchRequest, rank
from tests.support.directory import Directory, populate_experts

EXPERTS = int(os.environ.get("MATCH_EXPERTS", "10000"))
ROUNDS = int(os.environ.get("MATCH_ROUNDS", "300"))
ONLY = os.environ.get("MATCH_ONLY", "")
TARGET_MS = 20.0
PER_ROUND = ConsultationsSection().offers_per_round  # the experts a dispatch round offers a consultation to


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def stand_ins(directory: Directory, seed: int = 3) -> tuple[Callable[[list[int]], set[int]],
                                                           Callable[[list[int]], dict[int, int]]]:
    rng = random.Random(seed)
    on_duty = {e for e in directory.expert_ids if rng.random() < 0.3}
    load = {e: rng.randrange(0, 6) for e in directory.expert_ids if rng.random() < 0.5}
    timings: list[float] = []

    def available_now(ids: list[int]) -> set[int]:
        t = time.perf_counter()
        found = on_duty.intersection(ids)
        timings.append(time.perf_counter() - t)
        return found

    def load_today(ids: list[int]) -> dict[int, int]:
        t = time.perf_counter()
        found = {i: load[i] for i in ids if i in load}
        timings.append(time.perf_counter() - t)
        return found

    available_now.timings = timings  # type: ignore[attr-defined]
    return available_now, load_today


def measure(engine: sa.Engine, directory: Directory, request: MatchRequest, prefix: str, label: str) -> float:
    available_now, load_today = stand_ins(directory)
    timings: list[float] = available_now.timings  # type: ignore[attr-defined]
    total, cpu, candidates_ms, rank_ms, callables_ms = [], [], [], [], []
    count = 0
    for i in range(ROUNDS + 20):
        now = now_ms()
        timings.clear()
        c0 = time.thread_time()
        t0 = time.perf_counter()
        with engine.connect() as conn:
            found = experts.candidates(conn, request, now_ms=now, available_now=available_now, load_today=load_today)
        t1 = time.perf_counter()
        ranked = rank(request, found, now_ms=now)
        t2 = time.perf_counter()
        c2 = time.thread_time()
        if i < 20:  # warm-up: the pool's first connections, SQLAlchemy's statement cache
            continue
        count = len(found)
        assert ranked, "nobody matched"
        called = sum(timings) * 1000
        total.append((t2 - t0) * 1000)
        cpu.append((c2 - c0) * 1000)
        candidates_ms.append((t1 - t0) * 1000 - called)
        rank_ms.append((t2 - t1) * 1000)
        callables_ms.append(called)
    p99 = percentile(total, 0.99)
    print(f"{prefix}match_experts_p50_ms_{label}: {statistics.median(total):.2f} ms")
    print(f"{prefix}match_experts_p99_ms_{label}: {p99:.2f} ms")
    print(f"{prefix}match_experts_cpu_p50_ms_{label}: {statistics.median(cpu):.2f} ms")
    print(f"{prefix}match_experts_cpu_p99_ms_{label}: {percentile(cpu, 0.99):.2f} ms")
    print(f"{prefix}candidates_p99_ms_{label}: {percentile(candidates_ms, 0.99):.2f} ms")
    print(f"{prefix}rank_p99_ms_{label}: {percentile(rank_ms, 0.99):.2f} ms")
    print(f"{prefix}callables_p99_ms_{label}: {percentile(callables_ms, 0.99):.3f} ms")
    print(f"{prefix}candidates_count_{label}: {count} experts")
    return p99


def mid_morning(now: int, zone: str = "Asia/Shanghai") -> int:
    """The latest weekday 10:30 in the directory's main zone before `now`: its busy hours (everyone inside their
    published window, a morning of consultations), whenever the benchmark runs."""
    tz = ZoneInfo(zone)
    day = datetime.fromtimestamp(now / 1000, tz)
    while True:
        candidate = day.replace(hour=10, minute=30, second=0, microsecond=0)
        if candidate.weekday() < 5 and candidate.timestamp() * 1000 <= now:
            return int(candidate.timestamp() * 1000)
        day -= timedelta(days=1)


def with_schedules(engine: sa.Engine, directory: Directory, at: int, seed: int = 5) -> None:
    """Availability for everyone, 08:00-20:00 every day in their zone; a month of consultations up to `at`; a
    twentieth of the experts on leave at `at`, a twentieth in a booked appointment, and a year of past leave and
    appointments for everyone (what the real callables, `hq.scheduling.available_now` and
    `hq.dispatching.load_today`, read and must not scan)."""
    from hq.models import appointments, availability_exceptions, availability_rules, clinics
    from tests.support.directory import populate_consultations

    rng = random.Random(seed)
    rules = [{"expert_id": e, "weekday": d, "start_time": "08:00", "end_time": "20:00", "slot_minutes": 30}
             for e in directory.expert_ids for d in range(7)]
    leave, booked = [], []
    for e in directory.expert_ids:
        for month in range(1, 13):  # the past: one day of leave and one appointment a month
            start = at - month * 30 * 86_400_000
            leave.append({"expert_id": e, "starts_ms": start, "ends_ms": start + 86_400_000, "kind": "leave",
                          "created_ms": start})
            booked.append({"expert_id": e, "start_ms": start, "end_ms": start + 1_800_000, "status": "booked"})
        chance = rng.random()
        if chance < 0.05:
            leave.append({"expert_id": e, "starts_ms": at - 3_600_000, "ends_ms": at + 3_600_000, "kind": "leave",
                          "created_ms": at})
        elif chance < 0.10:
            booked.append({"expert_id": e, "start_ms": at - 600_000, "end_ms": at + 1_200_000, "status": "booked"})
    with engine.begin() as conn:
        populate_consultations(conn, directory, end_ms=at, days=30, per_day=600)
        clinic = conn.execute(sa.select(clinics.c.id).limit(1)).scalar_one()
        for row in booked:
            row.update(department_id=directory.department_of[row["expert_id"]], clinic_id=clinic,
                       created_ms=row["start_ms"], updated_ms=row["start_ms"])
        for table, batch in ((availability_rules, rules), (availability_exceptions, leave), (appointments, booked)):
            for start in range(0, len(batch), 5000):
                conn.execute(table.insert(), batch[start:start + 5000])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))


def measure_real(engine: sa.Engine, request: MatchRequest, label: str, at: int, prefix: str = "real_callables_",
                 available_now: Callable[[sa.Connection, list[int], int], set[int]] | None = None) -> float:
    from hq import dispatching, scheduling

    asked = available_now or scheduling.available_now

    total, cpu, called = [], [], []
    for i in range(ROUNDS + 10):
        spent: list[float] = []
        c0 = time.thread_time()
        t0 = time.perf_counter()
        with engine.connect() as conn:
            def available(ids: list[int], conn: sa.Connection = conn, spent: list[float] = spent) -> set[int]:
                t = time.perf_counter()
                found = asked(conn, ids, at)
                spent.append(time.perf_counter() - t)
                return found

            def load(ids: list[int], conn: sa.Connection = conn, spent: list[float] = spent) -> dict[int, int]:
                t = time.perf_counter()
                found = dispatching.load_today(conn, ids, at)
                spent.append(time.perf_counter() - t)
                return found

            candidates = experts.candidates(conn, request, now_ms=at, available_now=available, load_today=load)
        rank(request, candidates, now_ms=at, limit=PER_ROUND)  # as a dispatch round does
        if i >= 10:
            total.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.thread_time() - c0) * 1000)
            called.append(sum(spent) * 1000)
    p99 = percentile(total, 0.99)
    print(f"{prefix}match_experts_p50_ms_{label}: {statistics.median(total):.2f} ms")
    print(f"{prefix}match_experts_p99_ms_{label}: {p99:.2f} ms (with {asked.__name__} and "
          f"hq.dispatching.load_today, {len(total)} requests, {len(candidates)} candidates)")
    print(f"{prefix}match_experts_cpu_p50_ms_{label}: {statistics.median(cpu):.2f} ms")
    print(f"{prefix}match_experts_cpu_p99_ms_{label}: {percentile(cpu, 0.99):.2f} ms")
    print(f"{prefix}p50_ms_{label}: {statistics.median(called):.2f} ms (the two callables alone)")
    print(f"{prefix}p99_ms_{label}: {percentile(called, 0.99):.2f} ms (the two callables alone)")
    return p99


def refresh_presence(engine: sa.Engine, at: int, label: str) -> None:
    """What HQ's refresher does in the background: every expert's free windows, from nothing."""
    from hq import presence

    t0 = time.perf_counter()
    refreshed = presence.refresh(engine, at, max_batches=10_000)
    print(f"presence_refresh_{refreshed}_ms_{label}: {(time.perf_counter() - t0) * 1000:.0f} ms "
          f"(all experts' free windows for the next {presence.HORIZON_MS // 3_600_000} h)")


def callables_at_scale(engine: sa.Engine, expert_ids: list[int], at: int, label: str) -> float:
    """The real callables asked about the whole directory at once (an emergency before its short form, every
    expert a candidate); returns available_now's median."""
    from hq import dispatching, scheduling

    figures: dict[str, list[float]] = {"available_now": [], "load_today": []}
    available = 0
    for i in range(35):
        with engine.connect() as conn:
            t0 = time.perf_counter()
            available = len(scheduling.available_now(conn, expert_ids, at))
            t1 = time.perf_counter()
            dispatching.load_today(conn, expert_ids, at)
            t2 = time.perf_counter()
        if i >= 5:
            figures["available_now"].append((t1 - t0) * 1000)
            figures["load_today"].append((t2 - t1) * 1000)
    n = len(expert_ids)
    for name, values in figures.items():
        print(f"{name}_{n}_ms_{label}: {statistics.median(values):.2f} ms (p99 {percentile(values, 0.99):.2f} ms)")
    print(f"available_now_{n}_found_{label}: {available} experts")
    return statistics.median(figures["available_now"])


def run(url: str, label: str, at_scale: dict[str, float]) -> float:
    engine = db.create_engine_for(url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            directory = populate_experts(conn, EXPERTS, now_ms=now_ms())
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(sa.text("ANALYZE"))
        request = MatchRequest(directory.largest_department, frozenset({"heart failure", "arrhythmia"}),
                               language="zh-CN")
        defaults = gc.get_threshold()
        heap.settle()  # as `python -m hq serve` does once it has started
        measure(engine, directory, request, "", label)
        measure(engine, directory, MatchRequest(None, frozenset({"chest pain"}), language="zh"), "any_department_",
                label)
        gc.unfreeze()
        gc.set_threshold(*defaults)
        measure(engine, directory, request, "unfrozen_heap_", label)
        at = mid_morning(now_ms())
        with_schedules(engine, directory, at)
        heap.settle()  # as `python -m hq serve` does once it has started
        from hq import scheduling

        measure_real(engine, request, label, at, "rules_only_", scheduling.available_now_from_rules)
        refresh_presence(engine, at, label)
        real_p99 = measure_real(engine, request, label, at)
        at_scale[label] = callables_at_scale(engine, directory.expert_ids, at, label)
        gc.unfreeze()
        gc.set_threshold(*defaults)
        return real_p99
    finally:
        engine.dispose()


def main() -> None:
    print(load_line("match_experts_load_average_1m"))
    print(f"match_experts_directory: {EXPERTS} experts, {ROUNDS} requests per case")
    at_scale: dict[str, float] = {}
    headline = on_each_database(lambda url, label: run(url, label, at_scale), ONLY)
    print(f"match_experts_p99_ms: {headline:.2f} ms (target <= {TARGET_MS:.0f} ms)")
    first = "sqlite" if "sqlite" in at_scale else next(iter(at_scale))
    print(f"available_now_{EXPERTS}_ms: {at_scale[first]:.2f} ms ({first}, median)")


if __name__ == "__main__":
    main()
