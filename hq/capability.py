"""Each expert's capability figures from history: consultations done, dispatch offers and how fast they were
accepted (median and p90 of accepted_ms - offered_ms, in whole seconds), ratings, how often the advice was
adopted, and when they last consulted. Aggregated by SQL over `consultations` and `dispatch_offers` (filled
by the consultations engineer's code, read here as the schema says).

`refresh` keeps `expert_capability` (what matching and the directory read for thousands of experts at once);
`figures_of` computes one expert's figures live for their profile. It does not decide what counts as a
match: that is `hq.matching`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from hq.models import consultations, dispatch_offers, expert_capability
from hq.sql_stats import percentiles_by_group, whole_seconds

log = logging.getLogger(__name__)

DONE_STATUSES = ("reported", "closed")
# Another worker refreshing already: skip rather than queue behind it (PostgreSQL; SQLite has one writer).
PG_REFRESH_LOCK = 0x6871_6361


def _filtered(column: sa.ColumnElement[Any], only: Sequence[int] | None) -> sa.ColumnElement[bool]:
    return column.is_not(None) if only is None else column.in_(only)


def _consultation_figures(only: Sequence[int] | None) -> sa.Select[Any]:
    c = consultations
    return (sa.select(c.c.expert_id,
                      sa.func.sum(sa.case((c.c.status.in_(DONE_STATUSES), 1), else_=0)).label("consultations_done"),
                      sa.func.count(c.c.rating).label("ratings"), sa.func.avg(c.c.rating).label("rating_avg"),
                      sa.func.count(c.c.advice_adopted).label("adoption_answers"),
                      sa.func.sum(sa.case((c.c.advice_adopted.is_(True), 1), else_=0)).label("adopted"),
                      sa.func.max(sa.func.coalesce(c.c.started_ms, c.c.accepted_ms)).label("last_consultation_ms"))
            .where(_filtered(c.c.expert_id, only)).group_by(c.c.expert_id))


def _offer_figures(only: Sequence[int] | None) -> sa.Select[Any]:
    o = dispatch_offers
    return (sa.select(o.c.expert_id, sa.func.count().label("offers"),
                      sa.func.sum(sa.case((o.c.outcome == "accepted", 1), else_=0)).label("offers_accepted"))
            .where(_filtered(o.c.expert_id, only)).group_by(o.c.expert_id))


def _response_percentiles(only: Sequence[int] | None) -> sa.Select[Any]:
    o, c = dispatch_offers, consultations
    responses = (sa.select(o.c.expert_id, whole_seconds(c.c.accepted_ms, o.c.offered_ms).label("response_s"))
                 .join(c, sa.and_(c.c.id == o.c.consultation_id, c.c.expert_id == o.c.expert_id))
                 .where(o.c.outcome == "accepted", c.c.accepted_ms.is_not(None), _filtered(o.c.expert_id, only))
                 .subquery("responses"))
    return percentiles_by_group(responses, ["expert_id"], "response_s", [50, 90])


def compute(conn: sa.Connection, now_ms: int, only: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """expert id -> figures (the columns of `expert_capability`), for every expert with any history (or `only`
    these experts); three aggregate queries, however many consultations there are."""
    figures: dict[int, dict[str, Any]] = {}

    def row_for(expert_id: int) -> dict[str, Any]:
        return figures.setdefault(expert_id, no_history(expert_id, now_ms))

    for r in conn.execute(_consultation_figures(only)).mappings().all():
        row_for(int(r["expert_id"])).update(
            consultations_done=int(r["consultations_done"] or 0), ratings=int(r["ratings"]),
            rating_avg=None if r["rating_avg"] is None else float(r["rating_avg"]),
            adoption_answers=int(r["adoption_answers"]), adopted=int(r["adopted"] or 0),
            last_consultation_ms=None if r["last_consultation_ms"] is None else int(r["last_consultation_ms"]))
    for r in conn.execute(_offer_figures(only)).mappings().all():
        row_for(int(r["expert_id"])).update(offers=int(r["offers"]), offers_accepted=int(r["offers_accepted"] or 0))
    for r in conn.execute(_response_percentiles(only)).mappings().all():
        row_for(int(r["expert_id"])).update(median_response_s=float(r["p50"]), p90_response_s=float(r["p90"]))
    return figures


def no_history(expert_id: int, now_ms: int) -> dict[str, Any]:
    return {"expert_id": expert_id, "consultations_done": 0, "offers": 0, "offers_accepted": 0,
            "median_response_s": None, "p90_response_s": None, "ratings": 0, "rating_avg": None,
            "adoption_answers": 0, "adopted": 0, "last_consultation_ms": None, "computed_ms": now_ms}


def refresh(conn: sa.Connection, now_ms: int) -> int | None:
    """Recompute every expert's figures and write those that changed into `expert_capability`, in the caller's
    transaction; returns how many experts' figures changed, or None when another HQ worker is refreshing right
    now (PostgreSQL). Only changes are written: on SQLite the write lock (which ingest waits for) is held for a
    few rows, not for every expert's."""
    if conn.dialect.name == "postgresql" and not conn.execute(
            sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PG_REFRESH_LOCK}).scalar():
        return None
    figures = compute(conn, now_ms)
    current = {int(r["expert_id"]): dict(r) for r in conn.execute(sa.select(expert_capability)).mappings()}
    changed = [f for expert_id, f in figures.items() if _differs(current.get(expert_id), f)]
    stale = [expert_id for expert_id in current if expert_id not in figures]
    doomed = stale + [f["expert_id"] for f in changed if f["expert_id"] in current]
    for start in range(0, len(doomed), 1000):
        conn.execute(expert_capability.delete().where(expert_capability.c.expert_id.in_(doomed[start:start + 1000])))
    for start in range(0, len(changed), 5000):
        conn.execute(expert_capability.insert(), changed[start:start + 5000])
    return len(changed) + len(stale)


def _differs(stored: Mapping[str, Any] | None, fresh: Mapping[str, Any]) -> bool:
    if stored is None:
        return True
    for name, value in fresh.items():
        if name == "computed_ms":
            continue
        old = stored[name]
        if isinstance(value, float) and isinstance(old, float):
            if abs(value - old) > 1e-9 * max(1.0, abs(value)):
                return True
        elif value != old:
            return True
    return False


def figures_of(conn: sa.Connection, expert_id: int, now_ms: int) -> dict[str, Any]:
    """One expert's figures, live (a profile page must not show yesterday's numbers after today's case)."""
    return compute(conn, now_ms, [expert_id]).get(expert_id) or no_history(expert_id, now_ms)


def adoption_rate(figures: Mapping[str, Any]) -> float | None:
    answers = figures["adoption_answers"]
    return None if not answers else figures["adopted"] / answers


def acceptance_rate(figures: Mapping[str, Any]) -> float | None:
    offers = figures["offers"]
    return None if not offers else figures["offers_accepted"] / offers
