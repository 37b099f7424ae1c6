"""Appointment reminders and delivery confirmations: a background task that queues a reminder to the clinic's
gateway (and shows it on the expert's console) before each booked appointment, and the receipt hook that marks
an appointment confirmed when the clinic's gateway has stored its confirmation.

The rules (who is due, what is marked) are `hq.booking.remind_due` and `mark_confirmed`; this is the timing and
the wiring (`register` in `hq.app.create_app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from gateway import appointment_wire as aw
from gateway import wire
from hq import booking
from hq.appkeys import CONFIG, DOWNLINK, ENGINE, HUB, RECEIPTS
from hq.auth import Role
from hq.clock import now_ms
from hq.gateway_events import EventContext
from hq.live import LiveHub

log = logging.getLogger(__name__)


def confirm_on_receipt(ctx: EventContext, message: dict[str, Any], receipt: wire.Receipt) -> None:
    """In the ingest transaction: the gateway has the confirmation of the appointment's current time."""
    body = message["body"] or {}
    appointment_id, start_ms = body.get("appointment_id"), body.get("start_ms")
    if not isinstance(appointment_id, int) or not isinstance(start_ms, int):
        log.error("receipt of notice %d (%s) names no appointment", message["id"], message["kind"])
        return
    if receipt.outcome == "rejected":
        log.warning("gateway %s could not apply the confirmation of appointment %d: %s", message["gateway_id"],
                    appointment_id, receipt.detail)
        return
    row = booking.mark_confirmed(ctx.conn, appointment_id, start_ms=start_ms, at_ms=ctx.hq_ms,
                                 gateway_id=message["gateway_id"])
    if row is None:
        return  # moved or cancelled since, or confirmed already by another of the clinic's gateways
    update = {"type": "appointment", "event": "delivered", "appointment": booking.appointment_json(row),
              "gateway_id": message["gateway_id"],
              "text": f"The clinic's gateway {message['gateway_id']} has the booking with {row['expert_name']}."}
    ctx.notify(update, roles=(str(Role.CLINIC_STAFF), str(Role.COORDINATOR)), clinic_id=row["clinic_id"])
    if row["expert_user_id"] is not None:
        ctx.notify(update, user_ids=(int(row["expert_user_id"]),))


class Reminders:
    """Every `poll_s`, queues the reminders of appointments starting within `lead_s` (each once, even with
    several HQ workers)."""

    def __init__(self, engine: sa.Engine, hub: LiveHub, *, lead_s: int, poll_s: float,
                 wake_downlink: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.hub = hub
        self.lead_ms = lead_s * 1000
        self.poll_s = poll_s
        self.wake_downlink = wake_downlink
        self.sent_total = 0

    def _due(self) -> list[booking.Change]:
        with self.engine.begin() as conn:
            return booking.remind_due(conn, now=now_ms(), lead_ms=self.lead_ms)

    async def run_once(self) -> int:
        changes = await asyncio.to_thread(self._due)
        for change in changes:
            change.announce(self.hub)
        if any(c.notices for c in changes) and self.wake_downlink is not None:
            self.wake_downlink()
        self.sent_total += len(changes)
        return len(changes)

    async def run(self) -> None:
        while True:
            try:
                await self.run_once()
            except sa.exc.SQLAlchemyError as exc:
                log.error("reminders: cannot read appointments (trying again in %.0f s): %s", self.poll_s, exc)
            await asyncio.sleep(self.poll_s)


async def _reminders(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].scheduling
    reminders = Reminders(app[ENGINE], app[HUB], lead_s=config.reminder_before_s, poll_s=config.reminder_poll_s,
                          wake_downlink=app[DOWNLINK].wake)
    task = asyncio.create_task(reminders.run(), name="hq-reminders")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def register(app: web.Application) -> None:
    """The receipt hooks of confirming notices and the reminder task (after the database and ingest start)."""
    for kind in aw.CONFIRMING_KINDS:
        app[RECEIPTS].on_receipt(kind, confirm_on_receipt)
    app.cleanup_ctx.append(_reminders)
