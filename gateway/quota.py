"""The outbox's disk quota policy: what to drop when the outbox outgrows its quota. Pure, no I/O.

Entries HQ already confirmed (kept only for a replay) go first; then the lowest lane first (bulk, then
vitals backlog, then live vitals), oldest first within a lane; alarms, emergency signalling and
consultation events are never dropped. The outbox carries the plan out and records each drop of an
unconfirmed entry as an explicit gap for HQ.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.wire import Lane

DROPPABLE_LANES = (Lane.BULK, Lane.BACKLOG, Lane.VITALS)  # in the order they are sacrificed
TARGET_FRACTION = 0.9  # drop down to 90 % of the quota, so the next commits do not drop again at once


def plan_drop(
    used_bytes: int, quota_bytes: int, counts: Mapping[Lane, int], confirmed: int = 0
) -> tuple[int, list[tuple[Lane, int]]]:
    """(confirmed entries to drop, [(lane, number of its oldest entries to drop)]) so that the outbox
    falls to TARGET_FRACTION of its quota.

    Entry size is estimated as the average over all entries, waiting and confirmed. Returns (0, []) when
    within quota, and drops only what can go: if alarms alone exceed the quota, nothing is dropped.
    """
    total = sum(counts.values()) + confirmed
    if used_bytes <= quota_bytes or total == 0:
        return 0, []
    bytes_per_entry = used_bytes / total
    to_free = used_bytes - int(quota_bytes * TARGET_FRACTION)
    remaining = max(1, -(-to_free // max(1, int(bytes_per_entry))))  # ceil
    from_confirmed = min(confirmed, remaining)
    remaining -= from_confirmed
    plan: list[tuple[Lane, int]] = []
    for lane in DROPPABLE_LANES:
        n = min(counts.get(lane, 0), remaining)
        if n:
            plan.append((lane, n))
            remaining -= n
        if remaining <= 0:
            break
    return from_confirmed, plan
