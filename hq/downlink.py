"""The downlink: notices HQ sends a gateway (confirmations, reminders, consultation updates, reports,
configuration), queued in the sender's transaction, published until the gateway's receipt comes back
through its outbox, and then handed to whoever asked for the receipt of that kind.

A notice is published only while its gateway is online (the broker would otherwise pile up copies), again
after `retry_s` without a receipt, and at once when the gateway comes back online.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from gateway import wire
from gateway.mqttlink import MqttError, MqttLink
from hq.clock import now_ms
from hq.gateway_events import EventContext, EventError, GatewayEvents
from hq.models import downlink_messages, gateways

log = logging.getLogger(__name__)

RETRY_S = 30.0
POLL_S = 2.0
CLAIM_LIMIT = 100
PUBLISH_TIMEOUT_S = 5.0

# Called in the ingest transaction when the receipt of a notice of this kind arrives.
ReceiptHook = Callable[[EventContext, dict[str, Any], wire.Receipt], None]


def send(conn: sa.Connection, gateway_id: str, kind: str, body: dict[str, Any]) -> int:
    """Queue a notice to a gateway in the caller's transaction (sent once that commits); returns its id."""
    result = conn.execute(downlink_messages.insert().values(gateway_id=gateway_id, kind=kind, body=body,
                                                            created_ms=now_ms(), attempts=0))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def send_to_clinic(conn: sa.Connection, clinic_id: str, kind: str, body: dict[str, Any]) -> list[int]:
    """The same notice to every gateway of a clinic (usually one); none if the clinic has no gateway yet."""
    ids = conn.execute(sa.select(gateways.c.id).where(gateways.c.clinic_id == clinic_id)
                       .order_by(gateways.c.id)).scalars().all()
    return [send(conn, gw, kind, body) for gw in ids]


def pending(conn: sa.Connection, gateway_id: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(downlink_messages).where(downlink_messages.c.delivered_ms.is_(None)).order_by(downlink_messages.c.id)
    if gateway_id is not None:
        q = q.where(downlink_messages.c.gateway_id == gateway_id)
    return [dict(r) for r in conn.execute(q).mappings()]


def claim_due(conn: sa.Connection, *, now: int, retry_ms: int, limit: int = CLAIM_LIMIT) -> list[dict[str, Any]]:
    """Mark up to `limit` notices as sent now and return them: undelivered, to an online gateway, never sent
    or sent over `retry_ms` ago. Concurrent HQ workers claim disjoint sets (the UPDATE's WHERE re-checks)."""
    m = downlink_messages
    due = (sa.select(m.c.id).join(gateways, gateways.c.id == m.c.gateway_id)
           .where(m.c.delivered_ms.is_(None), gateways.c.state == str(wire.GatewayState.ONLINE),
                  sa.or_(m.c.sent_ms.is_(None), m.c.sent_ms < now - retry_ms))
           .order_by(m.c.id).limit(limit))
    ids = list(conn.execute(due).scalars())
    if not ids:
        return []
    rows = conn.execute(
        m.update().where(m.c.id.in_(ids), m.c.delivered_ms.is_(None),
                         sa.or_(m.c.sent_ms.is_(None), m.c.sent_ms < now - retry_ms))
        .values(sent_ms=now, attempts=m.c.attempts + 1)
        .returning(m.c.id, m.c.gateway_id, m.c.kind, m.c.body, m.c.created_ms)
    ).mappings().all()
    return sorted((dict(r) for r in rows), key=lambda r: r["id"])


class Receipts:
    """Applies receipts (the gateway event `DOWNLINK_RECEIPT`) and calls the hook of the notice's kind."""

    def __init__(self) -> None:
        self._hooks: dict[str, ReceiptHook] = {}

    def on_receipt(self, kind: str, hook: ReceiptHook) -> None:
        if kind in self._hooks:
            raise ValueError(f"a receipt hook for notices of kind {kind!r} is already registered")
        self._hooks[kind] = hook

    def register(self, events: GatewayEvents) -> None:
        events.register(wire.RECEIPT_METRIC, self.apply)

    def apply(self, ctx: EventContext, row: dict[str, Any]) -> None:
        try:
            receipt = wire.receipt_from_extra(row["extra"])
        except wire.WireError as exc:
            raise EventError(str(exc)) from exc
        m = downlink_messages
        message = ctx.conn.execute(sa.select(m).where(m.c.id == receipt.notice_id)).mappings().first()
        if message is None or message["gateway_id"] != row["gateway_id"]:
            raise EventError(f"receipt for notice {receipt.notice_id}, which HQ never sent to {row['gateway_id']}")
        if message["delivered_ms"] is not None:
            return  # a repeated receipt
        ctx.conn.execute(m.update().where(m.c.id == receipt.notice_id).values(
            delivered_ms=ctx.hq_ms, outcome=receipt.outcome, outcome_detail=receipt.detail))
        hook = self._hooks.get(message["kind"])
        if hook is not None:
            hook(ctx, dict(message), receipt)


class Downlink:
    """Publishes due notices; `wake()` after committing a `send` (or a gateway coming online) sends at once."""

    def __init__(self, engine: sa.Engine, link: MqttLink, *, retry_s: float = RETRY_S, poll_s: float = POLL_S) -> None:
        self.engine = engine
        self.link = link
        self.retry_s = retry_s
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self.published_total = 0
        self.publish_failures_total = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()
            if not self.link.is_connected:
                continue
            try:
                await self.publish_due()
            except sa.exc.SQLAlchemyError as exc:
                log.error("downlink: cannot read pending notices: %s", exc)

    async def publish_due(self) -> int:
        rows = await asyncio.to_thread(self._claim)
        for row in rows:
            notice = wire.Notice(row["id"], row["kind"], row["body"], now_ms())
            try:
                # The link's own timeout, not asyncio.wait_for: on Python 3.11 wait_for returns the publish's
                # outcome when a cancellation arrives with it, swallowing the cancel (this loop then never ended).
                await self.link.publish(wire.notice_topic(row["gateway_id"]), wire.encode_notice(notice), qos=1,
                                        timeout_s=PUBLISH_TIMEOUT_S)
                self.published_total += 1
            except (MqttError, TimeoutError) as exc:
                self.publish_failures_total += 1
                log.warning("downlink: notice %d to %s not published (retried in %.0f s): %s", row["id"],
                            row["gateway_id"], self.retry_s, exc)
        return len(rows)

    def _claim(self) -> list[dict[str, Any]]:
        with self.engine.begin() as conn:
            return claim_due(conn, now=now_ms(), retry_ms=int(self.retry_s * 1000))
