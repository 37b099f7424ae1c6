"""Experts' presence, precomputed: a background task that writes each expert's free windows (published
availability minus leave, clinic duty and booked appointments; `hq.slots.free_intervals`) for the next hours
into `expert_free_windows`, so that `hq.scheduling.available_now` answers an emergency's thousands of candidates
with one probe each instead of evaluating everyone's weekly rules in their time zone.

The table is only a cache of what the rules say. Triggers make an expert's row stale (and bump its generation) in
the transaction that changes their rules, exceptions, appointments or time zone; `available_now` computes stale
and missing experts from the rules themselves, so a stale cache is slower, never wrong. A refresh writes only
the rows whose generation it read before it read the data (compare-and-set), so a change committed while it
computed wins, and several HQ workers may refresh at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web

from hq import scheduling, slots, store
from hq.appkeys import CONFIG, ENGINE
from hq.clock import now_ms
from hq.models import expert_free_windows, expert_presence, experts

log = logging.getLogger(__name__)

HORIZON_MS = 24 * 3_600_000  # how far ahead a refresh computes an expert's windows
RENEW_MS = 12 * 3_600_000  # rows whose range ends sooner than this are computed again
SPREAD_MS = 6 * 3_600_000  # ranges end up to this much sooner, differently per expert (see `expires`)
BATCH = 500  # experts per transaction (the refresher holds their presence rows meanwhile)


@dataclass
class PresenceStats:
    refreshed: int = 0  # experts whose windows were written
    lost_races: int = 0  # experts changed while being computed (left stale, done again next time)
    failures: int = 0


def add_missing_rows(conn: sa.Connection) -> int:
    """A (stale) presence row for every expert who has none: the rows the triggers bump exist before any
    refresh reads a generation (a refresh must never insert a row a concurrent change could not have bumped)."""
    p = expert_presence
    missing = sa.select(experts.c.id).where(~sa.exists().where(p.c.expert_id == experts.c.id))
    # SQLite parses ON CONFLICT after INSERT ... SELECT only when the SELECT has a WHERE clause: it has.
    insert = store.dialect_insert(conn)(p).from_select(["expert_id"], missing).on_conflict_do_nothing()
    return int(conn.execute(insert).rowcount or 0)


def expires(expert_id: int, computed_ms: int) -> int:
    """When windows computed at `computed_ms` stop being used: HORIZON_MS later, less a fixed share of
    SPREAD_MS per expert. Computed together at HQ's first start, the directory's windows are then renewed over
    six hours instead of all at the same minute twelve hours on."""
    return computed_ms + HORIZON_MS - (expert_id * 2_654_435_761) % SPREAD_MS


def due(conn: sa.Connection, now: int, limit: int = BATCH) -> list[tuple[int, int]]:
    """(expert id, generation) of rows that are stale or run out within RENEW_MS of `now`, by expert id."""
    p = expert_presence
    return [(int(i), int(g)) for i, g in conn.execute(
        sa.select(p.c.expert_id, p.c.generation)
        .where(sa.or_(p.c.until_ms < now + RENEW_MS, p.c.from_ms > now))
        .order_by(p.c.expert_id).limit(limit)).all()]


def compute(conn: sa.Connection, expert_ids: list[int], now: int) -> dict[int, list[slots.Interval]]:
    """Each expert's free windows over [now, now + HORIZON_MS); experts whose time zone this machine does not
    know have none (as `available_now` treats them)."""
    found = scheduling.calendars(conn, expert_ids, now, now + HORIZON_MS, holding=("booked",))
    return {i: slots.free_intervals(found[i], now, now + HORIZON_MS) if i in found else [] for i in expert_ids}


def write(conn: sa.Connection, generations: list[tuple[int, int]], windows: dict[int, list[slots.Interval]],
          now: int) -> int:
    """Store the windows and mark the rows fresh where the generation is still the one read; returns how many."""
    ids = [i for i, _ in generations]
    w, p = expert_free_windows, expert_presence
    conn.execute(w.delete().where(w.c.expert_id.in_(ids)))
    rows = [{"expert_id": i, "starts_ms": iv.start_ms, "ends_ms": iv.end_ms} for i in ids for iv in windows[i]]
    if rows:
        conn.execute(w.insert(), rows)
    conn.execute(p.update().where(p.c.expert_id == sa.bindparam("id"), p.c.generation == sa.bindparam("seen"))
                 .values(from_ms=now, until_ms=sa.bindparam("until")),
                 [{"id": i, "seen": g, "until": expires(i, now)} for i, g in generations])
    # executemany reports no per-row counts: count what this transaction made fresh.
    return int(conn.execute(sa.select(sa.func.count()).where(
        p.c.expert_id.in_(ids), p.c.from_ms == now, p.c.until_ms > now)).scalar_one())


def refresh(engine: sa.Engine, now: int, stats: PresenceStats | None = None, *, max_batches: int = 100) -> int:
    """Compute every due expert's windows as of `now`, BATCH at a time; returns how many rows became fresh."""
    stats = stats if stats is not None else PresenceStats()
    with engine.begin() as conn:
        add_missing_rows(conn)
    total = 0
    for _ in range(max_batches):
        with engine.connect() as conn:
            generations = due(conn, now)  # before the data: a change committed after this bumps the generation
            if not generations:
                break
            windows = compute(conn, [i for i, _ in generations], now)
        with engine.begin() as conn:
            fresh = write(conn, generations, windows, now)
        total += fresh
        stats.refreshed += fresh
        stats.lost_races += len(generations) - fresh
        if fresh == 0:
            break  # everything in the batch changed meanwhile: next round
    return total


PRESENCE_STATS: web.AppKey[PresenceStats] = web.AppKey("presence_stats", PresenceStats)


async def _loop(engine: sa.Engine, interval_s: float, stats: PresenceStats) -> None:
    while True:
        try:
            await asyncio.to_thread(refresh, engine, now_ms(), stats)
        except sa.exc.SQLAlchemyError as exc:
            stats.failures += 1
            log.error("presence: cannot refresh experts' free windows (trying again in %.0f s; matching computes "
                      "them from the rules meanwhile): %s", interval_s, exc)
        await asyncio.sleep(interval_s)


async def background(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the refresher, from start to shutdown."""
    stats = app[PRESENCE_STATS] = PresenceStats()
    task = asyncio.create_task(_loop(app[ENGINE], app[CONFIG].scheduling.presence_refresh_s, stats),
                               name="hq-presence")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
