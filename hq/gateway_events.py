"""Events a gateway puts in its outbox for HQ to act on (an emergency, a consultation form, a check-in, a
notice receipt): each newly stored event row goes, inside the ingest transaction, to the handler registered
for its metric (the event's name).

The registry and the dispatch only; the handlers belong to the domain modules (`hq.consultations`, ...).
A handler that finds the event malformed raises `EventError`: its work is rolled back to a savepoint and the
event row stays stored (nothing is lost, the batch is still acknowledged), counted and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)


class EventError(ValueError):
    """An event's content is not what its handler expects; the message names the field."""


@dataclass(frozen=True, slots=True)
class Notice:
    """For the console's live hub once the transaction committed (see `hq.live.LiveHub.notify`)."""

    message: dict[str, Any]
    user_ids: tuple[int, ...] | None = None
    roles: tuple[str, ...] | None = None
    clinic_id: str | None = None


@dataclass(slots=True)
class EventContext:
    """What a handler works with: the ingest transaction, HQ's commit time, and what to do after commit."""

    conn: sa.Connection
    hq_ms: int
    notices: list[Notice] = field(default_factory=list)
    downlink_queued: bool = False

    def notify(self, message: dict[str, Any], *, user_ids: Iterable[int] | None = None,
               roles: Iterable[str] | None = None, clinic_id: str | None = None) -> None:
        self.notices.append(Notice(message, None if user_ids is None else tuple(user_ids),
                                   None if roles is None else tuple(roles), clinic_id))


# The row is the stored observation row: gateway_id, clinic_id, seq, metric, value, time_ms (the clinic's
# time), recv_ms, patient_id, device_id, extra (the event's body).
Handler = Callable[[EventContext, dict[str, Any]], None]


@dataclass(slots=True)
class Outcome:
    notices: list[Notice] = field(default_factory=list)
    downlink_queued: bool = False
    handled: int = 0
    rejected: int = 0


class GatewayEvents:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self.handled_total = 0
        self.rejected_total = 0

    def register(self, metric: str, handler: Handler) -> None:
        if metric in self._handlers:
            raise ValueError(f"a handler for gateway event {metric!r} is already registered")
        self._handlers[metric] = handler

    def wants(self, row: dict[str, Any]) -> bool:
        return row["kind"] == "event" and row["metric"] in self._handlers

    def apply(self, conn: sa.Connection, rows: Iterable[dict[str, Any]], hq_ms: int) -> Outcome:
        """Run the handlers of the newly stored event rows, in seq order, each in a savepoint."""
        outcome = Outcome()
        for row in sorted((r for r in rows if self.wants(r)), key=lambda r: (r["gateway_id"], r["seq"])):
            ctx = EventContext(conn, hq_ms)
            savepoint = conn.begin_nested()
            try:
                self._handlers[row["metric"]](ctx, row)
            except EventError as exc:
                savepoint.rollback()
                outcome.rejected += 1
                self.rejected_total += 1
                log.error("gateway %s event %s (seq %d) rejected: %s", row["gateway_id"], row["metric"], row["seq"],
                          exc)
                continue
            savepoint.commit()
            outcome.handled += 1
            self.handled_total += 1
            outcome.notices += ctx.notices
            outcome.downlink_queued |= ctx.downlink_queued
        return outcome
