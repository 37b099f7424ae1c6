"""The Uplink: drains the outbox to HQ over MQTT, highest-priority lane first, and removes entries
only when HQ's acknowledgement says it committed them. It also publishes the gateway's status.

It does not store anything itself: after a crash or reconnect it resends whatever is still in the
outbox (HQ deduplicates by (gateway_id, seq)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway import wire
from gateway.mqttlink import Message, MqttError, MqttLink
from gateway.outbox import Outbox, OutboxError
from gateway.wire import Lane

log = logging.getLogger(__name__)


@dataclass(slots=True)
class InFlight:
    lane: Lane
    first: int
    last: int
    count: int
    sent_at: float


@dataclass(slots=True)
class UplinkStats:
    batches_sent: int = 0
    records_sent: int = 0
    records_acked: int = 0
    ack_timeouts: int = 0
    publish_errors: int = 0
    acks_rejected: int = 0
    last_ack_ms: int | None = None
    resend_records: int = 0
    drained_at: list[tuple[float, int]] = field(default_factory=list)


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Uplink:
    def __init__(
        self,
        outbox: Outbox,
        link: MqttLink,
        *,
        gateway_id: str,
        clinic_id: str,
        batch_max_records: int = 500,
        max_inflight_batches: int = 8,
        ack_timeout_s: float = 15.0,
        live_window_s: float = 60.0,
        status_source: Callable[[], Awaitable[wire.Status]] | None = None,
        heartbeat_s: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.link = link
        self.gateway_id = gateway_id
        self.clinic_id = clinic_id
        self.batch_max_records = batch_max_records
        self.max_inflight_batches = max_inflight_batches
        self.ack_timeout_s = ack_timeout_s
        self.heartbeat_s = heartbeat_s
        self.live_window_s = live_window_s
        self._status_source = status_source
        self._cursor: dict[Lane, int] = dict.fromkeys(Lane, 0)
        self._inflight: dict[tuple[Lane, int, int], InFlight] = {}
        self._wake = asyncio.Event()
        self._status_due = asyncio.Event()
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self.stats = UplinkStats()
        self.committed_seq = 0

    # ---- wiring with the link -------------------------------------------------------------
    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.ack_topic(self.gateway_id), 1)]

    def on_connect(self) -> None:
        # Whatever was in flight on the old connection may be lost: resend everything unacked.
        self._reset_all()
        self._status_due.set()
        self._wake.set()

    def on_disconnect(self) -> None:
        self._reset_all()

    def on_message(self, message: Message) -> None:
        if message.topic != wire.ack_topic(self.gateway_id):
            return
        try:
            ack = wire.decode_ack(message.payload)
        except wire.WireError as exc:
            self.stats.acks_rejected += 1
            log.error("ignoring malformed ack on %s: %s", message.topic, exc)
            return
        task = asyncio.get_running_loop().create_task(self._apply_ack(ack))
        # The loop keeps only weak references to tasks: hold on until the ack is applied.
        self._ack_tasks.add(task)
        task.add_done_callback(self._ack_tasks.discard)

    def set_status_source(self, source: Callable[[], Awaitable[wire.Status]]) -> None:
        self._status_source = source

    def status_changed(self) -> None:
        """Publish a status now (e.g. a device went silent), not at the next heartbeat."""
        self._status_due.set()

    # ---- main loops -----------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._drain_loop())
            tg.create_task(self._status_loop())
            tg.create_task(self._watch_outbox())
            tg.create_task(self._demote_loop())

    async def _demote_loop(self) -> None:
        """Vitals older than the live window become backlog: after an outage, what is happening now
        reaches HQ before what happened hours ago."""
        interval = max(1.0, self.live_window_s / 12)
        while True:
            await asyncio.sleep(interval)
            cutoff = clock_ms() - int(self.live_window_s * 1000)
            try:
                moved = await self.outbox.demote_stale_vitals(cutoff, self._cursor[Lane.VITALS])
            except OutboxError as exc:
                log.error("moving stale vitals to the backlog lane failed: %s", exc)
                continue
            if moved:
                log.info("%d vitals older than %.0f s moved to the backlog lane", moved, self.live_window_s)

    async def _watch_outbox(self) -> None:
        while True:
            await self.outbox.changed.wait()
            self.outbox.changed.clear()
            self._wake.set()

    async def _drain_loop(self) -> None:
        while True:
            await self.link.wait_connected()
            self._expire_inflight()
            sent = False
            if len(self._inflight) < self.max_inflight_batches:
                try:
                    sent = await self._send_next()
                except OutboxError as exc:
                    log.error("cannot read the outbox: %s; retrying", exc)
                    await asyncio.sleep(1.0)
            if not sent:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._next_deadline()):
                        await self._wake.wait()

    def _next_deadline(self) -> float:
        if not self._inflight:
            return self.ack_timeout_s
        oldest = min(f.sent_at for f in self._inflight.values())
        return max(0.05, oldest + self.ack_timeout_s - time.monotonic())

    async def _send_next(self) -> bool:
        for lane in Lane:  # IntEnum order: highest priority first
            if self.outbox.count(lane) == 0:
                continue
            records = await self.outbox.read_lane(lane, self._cursor[lane], self.batch_max_records)
            if not records:
                continue
            batch = wire.Batch(self.gateway_id, self.clinic_id, lane, clock_ms(), records)
            key = (lane, batch.first_seq, batch.last_seq)
            self._cursor[lane] = batch.last_seq
            self._inflight[key] = InFlight(lane, batch.first_seq, batch.last_seq, len(records), time.monotonic())
            try:
                await self.link.publish(wire.data_topic(self.gateway_id), wire.encode_batch(batch), qos=1)
            except MqttError as exc:
                self.stats.publish_errors += 1
                log.warning("publishing batch %s..%s (lane %s) failed: %s",
                            batch.first_seq, batch.last_seq, lane.name, exc)
                self._reset_lane(lane)
                await asyncio.sleep(0.2)
                return False
            self.stats.batches_sent += 1
            self.stats.records_sent += len(records)
            return True
        return False

    def _expire_inflight(self) -> None:
        now = time.monotonic()
        expired = {f.lane for f in self._inflight.values() if now - f.sent_at > self.ack_timeout_s}
        for lane in expired:
            self.stats.ack_timeouts += 1
            log.warning("no ack from HQ within %.0f s for lane %s; resending", self.ack_timeout_s, lane.name)
            self._reset_lane(lane)

    def _reset_lane(self, lane: Lane) -> None:
        dropped = [k for k in self._inflight if k[0] == lane]
        for k in dropped:
            self.stats.resend_records += self._inflight.pop(k).count
        self._cursor[lane] = 0

    def _reset_all(self) -> None:
        for lane in Lane:
            self._reset_lane(lane)

    async def _apply_ack(self, ack: wire.Ack) -> None:
        try:
            removed = await self.outbox.remove_acked(ack.ranges)
        except Exception as exc:
            log.error("removing acked entries failed: %s", exc)
            return
        for lane, first, last in ack.ranges:
            for key in [k for k in self._inflight if k[0] == lane and k[1] >= first and k[2] <= last]:
                del self._inflight[key]
        self.committed_seq = max(self.committed_seq, ack.committed_seq)
        self.stats.records_acked += removed
        self.stats.last_ack_ms = clock_ms()
        self.stats.drained_at.append((time.monotonic(), removed))
        del self.stats.drained_at[:-64]
        self._wake.set()

    async def _status_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_s):
                    await self._status_due.wait()
            self._status_due.clear()
            if not self.link.is_connected or self._status_source is None:
                continue
            try:
                status = await self._status_source()
                await self.link.publish(wire.status_topic(self.gateway_id), wire.encode_status(status),
                                        qos=1, retain=True)
            except MqttError as exc:
                log.debug("status publish failed: %s", exc)

    def drain_rate_per_s(self, window_s: float = 30.0) -> float:
        now = time.monotonic()
        recent = [(t, n) for t, n in self.stats.drained_at if now - t <= window_s]
        if not recent:
            return 0.0
        span = max(1.0, now - recent[0][0])
        return sum(n for _, n in recent) / span
