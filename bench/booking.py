"""Booking under contention, with the real processes: 200 clinic clients POST bookings of the same few slots to
HQ's JSON API at the same moment (HQ on SQLite; then on PostgreSQL with two HQ workers splitting the clients),
for several rounds. Afterwards the database is searched for any two active appointments of one expert that
overlap — what a double booking is — independently of the slot claims that prevent it.

Prints per backend: booking_conflicts (must be 0), booking_succeeded (must equal the slots offered),
booking_refused (409: taken), booking_errors (anything else; must be 0), booking_latency_p50_ms and _p99_ms
(from the request sent to the answer, every attempt), booking_attempts_per_s; and booking_conflicts over both
backends.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import aiohttp
import sqlalchemy as sa

from bench.e2e import percentile
from hq import booking, db
from hq.models import appointments, slot_claims
from hq.slots import UNIT_MS
from tests.support import accounts, directory, schedule_rows
from tests.support.postgres import Postgres
from tests.support.stack import Stack

CLIENTS = 200  # concurrent bookings per round
EXPERTS = 5
SLOTS_PER_EXPERT = 2  # 10 slots: 20 clients want each one
ROUNDS = 3
CLINICS = 20
SLOT_MS = 30 * 60_000
DAY_MS = 86_400_000


@dataclass
class Outcome:
    statuses: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    offered: int = 0
    busy_s: float = 0.0  # from the gate opening to the last answer, summed over the rounds


def seed(db_url: str) -> tuple[list[int], list[str]]:
    """Experts available around the clock in several zones, clinics with a gateway each and a nurse each."""
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            dept = directory.add_department(conn, "cardiology")
            zones = itertools.cycle(["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
            experts = []
            for i in range(EXPERTS):
                expert, _ = schedule_rows.expert(conn, f"bench-expert-{i}", dept, time_zone=next(zones))
                schedule_rows.every_day(conn, expert, "00:00", "24:00", 30)
                experts.append(expert)
            for c in range(CLINICS):
                schedule_rows.gateway(conn, f"bench-gw-{c}", f"bench-clinic-{c}", online=False)
                schedule_rows.user(conn, f"bench-nurse-{c}", "clinic_staff", clinic_id=f"bench-clinic-{c}")
    finally:
        engine.dispose()
    return experts, [accounts.api_token(db_url, f"bench-nurse-{c}") for c in range(CLINICS)]


async def round_of(urls: list[str], experts: list[int], tokens: list[str], day: int, outcome: Outcome) -> None:
    base = (int(time.time() * 1000) // DAY_MS + 1 + day) * DAY_MS + 10 * 3_600_000  # 10:00 UTC, days ahead
    wanted = [(e, base + s * SLOT_MS) for e in experts for s in range(SLOTS_PER_EXPERT)]
    outcome.offered += len(wanted)
    start = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def book(i: int) -> None:
            expert, at = wanted[i % len(wanted)]
            url = urls[i % len(urls)] + "/api/v1/appointments"
            body = {"expert_id": expert, "start": at, "end": at + SLOT_MS, "reason": "benchmark"}
            headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            await start.wait()
            sent = time.perf_counter()
            async with http.post(url, json=body, headers=headers) as resp:
                await resp.read()
                outcome.statuses.append(resp.status)
            outcome.latencies_ms.append((time.perf_counter() - sent) * 1000)

        tasks = [asyncio.create_task(book(i)) for i in range(CLIENTS)]
        await asyncio.sleep(0.2)  # every client waiting at the gate
        opened = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        outcome.busy_s += time.perf_counter() - opened


def check(db_url: str) -> tuple[int, int]:
    """(overlapping pairs of active appointments of one expert, active appointments missing slot claims)."""
    engine = db.create_engine_for(db_url)
    active = ("booked", "pending_approval")
    try:
        with engine.connect() as conn:
            pairs = booking.double_bookings(conn)
            claims = dict(conn.execute(sa.select(slot_claims.c.appointment_id, sa.func.count())
                                       .group_by(slot_claims.c.appointment_id)).all())
            rows = conn.execute(sa.select(appointments.c.id, appointments.c.start_ms, appointments.c.end_ms)
                                .where(appointments.c.status.in_(active))).all()
            unclaimed = sum(1 for r in rows if claims.get(r.id, 0) != (r.end_ms - r.start_ms) // UNIT_MS)
    finally:
        engine.dispose()
    return pairs, unclaimed


def run(label: str, db_url: str | None, workers: int) -> int:
    with Stack(db_url=db_url) as stack:
        stack.start_broker()
        stack.start_hq()
        urls = [stack.hq_url] + [stack.start_hq_worker(n) for n in range(2, workers + 1)]
        experts, tokens = seed(stack.db_url)
        outcome = Outcome()
        for day in range(ROUNDS):
            asyncio.run(round_of(urls, experts, tokens, day, outcome))
        conflicts, unclaimed = check(stack.db_url)
    succeeded = outcome.statuses.count(201)
    refused = outcome.statuses.count(409)
    errors = len(outcome.statuses) - succeeded - refused
    print(f"booking_conflicts_{label}: {conflicts} count")
    print(f"booking_succeeded_{label}: {succeeded} count")
    print(f"booking_slots_offered_{label}: {outcome.offered} count")
    print(f"booking_refused_{label}: {refused} count")
    print(f"booking_errors_{label}: {errors} count")
    print(f"booking_unclaimed_{label}: {unclaimed} count")
    print(f"booking_latency_p50_ms_{label}: {percentile(outcome.latencies_ms, 0.50):.1f} ms")
    print(f"booking_latency_p99_ms_{label}: {percentile(outcome.latencies_ms, 0.99):.1f} ms")
    print(f"booking_attempts_per_s_{label}: {len(outcome.statuses) / outcome.busy_s:.0f} /s")
    print(f"booking_hq_workers_{label}: {workers} count", flush=True)
    if succeeded != outcome.offered or errors or unclaimed:
        other = sorted({s for s in outcome.statuses if s not in (201, 409)})
        raise SystemExit(f"{label}: {succeeded} of {outcome.offered} slots booked, {errors} errors (HTTP {other}), "
                         f"{unclaimed} appointments without their slot claims")
    return conflicts


def main() -> None:
    conflicts = run("sqlite", None, workers=1)
    with Postgres() as pg:
        conflicts += run("postgresql", pg.url, workers=2)
    print(f"booking_conflicts: {conflicts} count")


if __name__ == "__main__":
    main()
