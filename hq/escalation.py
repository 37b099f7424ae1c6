"""`Escalator`: the background task that escalates dispatch rounds nobody answered within T and flags short forms
past their deadline. Its state is the database (`next_escalation_ms`, `form_due_ms`), so an HQ that restarts
(or a second HQ worker) carries on where it left off; concurrent sweeps are kept apart by `hq.dispatching`'s
re-checked writes.

The clock and the loop only: the rules are in `hq.dispatching` and `hq.consultations`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import sqlalchemy as sa
from aiohttp import web

from hq import consultations, dispatching
from hq.after_commit import AfterCommit
from hq.clock import now_ms
from hq.config import ConsultationsSection

log = logging.getLogger(__name__)


class Escalator:
    def __init__(self, engine: sa.Engine, config: ConsultationsSection, app: web.Application,
                 clock: Callable[[], int] = now_ms) -> None:
        self.engine = engine
        self.config = config
        self.app = app
        self.clock = clock
        self._wake = asyncio.Event()
        self.escalated_total = 0
        self.overdue_total = 0

    def wake(self) -> None:
        """A new deadline may be sooner than the one being waited for."""
        self._wake.set()

    def sweep(self) -> tuple[int, int, int | None, AfterCommit]:
        """(escalated, flagged overdue, the next deadline, what to send) in one transaction (sync: in a thread)."""
        effects = AfterCommit()
        now = self.clock()
        with self.engine.begin() as conn:
            escalated = dispatching.escalate_due(conn, self.config, effects, now)
            overdue = consultations.flag_overdue_forms(conn, self.config, effects, now)
            nearest = dispatching.next_deadline(conn)
        return escalated, overdue, nearest, effects

    async def run(self) -> None:
        max_wait_s = self.config.sweep_interval_s
        while True:
            nearest: int | None = None
            try:
                escalated, overdue, nearest, effects = await asyncio.to_thread(self.sweep)
                effects.run(self.app)
                self.escalated_total += escalated
                self.overdue_total += overdue
            except sa.exc.SQLAlchemyError as exc:
                log.error("escalation sweep failed (retried in %.0f s): %s", max_wait_s, exc)
            wait_s = max_wait_s if nearest is None else min(max_wait_s, max(0.0, (nearest - self.clock()) / 1000))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
            self._wake.clear()
