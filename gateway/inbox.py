"""The Inbox: messages from HQ (confirmations, reminders, consultation updates, reports, configuration)
stored durably in the gateway's database, handed once to the handler registered for their kind, and
confirmed to HQ with a receipt that travels in the outbox (so it survives an outage like any reading).

It does not render anything: the local screen reads `recent()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway import wire
from gateway.mqttlink import Message
from gateway.outbox import Entry, Outbox, OutboxError, inbox_table

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Handled:
    outcome: str  # "applied" | "rejected" (a notice without a handler is "stored")
    detail: str | None = None


NoticeHandler = Callable[[wire.Notice], Awaitable[Handled]]


@dataclass(frozen=True, slots=True)
class StoredNotice:
    id: int
    kind: str
    body: dict[str, Any]
    hq_ms: int
    received_ms: int
    outcome: str
    detail: str | None


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


def receipt_entry(receipt: wire.Receipt, now_ms: int) -> Entry:
    return Entry("event", wire.RECEIPT_METRIC, float(receipt.notice_id), None, now_ms, now_ms, None, "gateway",
                 receipt.extra(), lane_hint=wire.Lane.CONSULT)


class Inbox:
    def __init__(self, outbox: Outbox, gateway_id: str, on_change: Callable[[], None] | None = None) -> None:
        self.outbox = outbox
        self.gateway_id = gateway_id
        self._handlers: dict[str, NoticeHandler] = {}
        self._tasks: set[asyncio.Task[StoredNotice]] = set()
        self._lock = asyncio.Lock()  # one notice at a time: a handler sees notices in arrival order
        self._on_change = on_change
        self.received_total = 0
        self.duplicates_total = 0
        self.rejected_total = 0
        self.malformed_total = 0

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.notice_topic(self.gateway_id), 1)]

    def register(self, kind: str, handler: NoticeHandler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for notices of kind {kind!r} is already registered")
        self._handlers[kind] = handler

    def on_message(self, message: Message) -> None:
        try:
            notice = wire.decode_notice(message.payload)
        except wire.WireError as exc:
            self.malformed_total += 1
            log.error("ignoring malformed notice on %s: %s", message.topic, exc)
            return
        task = asyncio.get_running_loop().create_task(self.receive(notice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def receive(self, notice: wire.Notice) -> StoredNotice:
        """Store and handle a notice once; confirm it (again, for a repeat) through the outbox."""
        async with self._lock:
            try:
                known = await self.outbox.query(lambda conn: _stored(conn, notice.id))
                if known is not None:
                    # HQ did not get our receipt yet (or sent before it did): confirm again, do nothing else.
                    self.duplicates_total += 1
                    await self.outbox.append([receipt_entry(
                        wire.Receipt(known.id, known.kind, known.outcome, known.detail), clock_ms())])
                    return known
                handled = await self._handle(notice)
                now = clock_ms()
                stored = StoredNotice(notice.id, notice.kind, notice.body, notice.hq_ms, now, handled.outcome,
                                      handled.detail)
                receipt = wire.Receipt(notice.id, notice.kind, handled.outcome, handled.detail)
                await self.outbox.commit_with(lambda conn: _store(conn, stored), [receipt_entry(receipt, now)])
            except OutboxError as exc:
                # Not confirmed: HQ sends it again, and it is handled then.
                log.error("notice %d (%s) not stored: %s", notice.id, notice.kind, exc)
                raise
        self.received_total += 1
        if handled.outcome == "rejected":
            self.rejected_total += 1
            log.warning("notice %d (%s) rejected: %s", notice.id, notice.kind, handled.detail)
        if self._on_change is not None:
            self._on_change()
        return stored

    async def _handle(self, notice: wire.Notice) -> Handled:
        handler = self._handlers.get(notice.kind)
        if handler is None:
            return Handled("stored")
        try:
            return await handler(notice)
        except Exception as exc:  # a handler's bug must not lose the notice or wedge the inbox
            log.exception("handling notice %d (%s) failed", notice.id, notice.kind)
            return Handled("rejected", f"the gateway could not apply it: {exc}")

    async def recent(self, limit: int = 50, kinds: tuple[str, ...] | None = None) -> list[StoredNotice]:
        def read(conn: sa.Connection) -> list[StoredNotice]:
            q = sa.select(inbox_table).order_by(inbox_table.c.id.desc()).limit(limit)
            if kinds is not None:
                q = q.where(inbox_table.c.kind.in_(kinds))
            return [_from_row(r) for r in conn.execute(q).mappings()]

        return await self.outbox.query(read)


def _store(conn: sa.Connection, n: StoredNotice) -> None:
    conn.execute(inbox_table.insert().values(
        id=n.id, kind=n.kind, body=json.dumps(n.body, separators=(",", ":"), ensure_ascii=False), hq_ms=n.hq_ms,
        received_ms=n.received_ms, outcome=n.outcome, detail=n.detail))


def _stored(conn: sa.Connection, notice_id: int) -> StoredNotice | None:
    row = conn.execute(sa.select(inbox_table).where(inbox_table.c.id == notice_id)).mappings().first()
    return None if row is None else _from_row(row)


def _from_row(row: Any) -> StoredNotice:
    return StoredNotice(row["id"], row["kind"], json.loads(row["body"]), row["hq_ms"], row["received_ms"],
                        row["outcome"], row["detail"])
