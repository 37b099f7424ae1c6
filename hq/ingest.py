"""`Ingest`: consumes gateway batches and statuses from MQTT, commits them idempotently in groups, then acks.

Order per group: one DB transaction (in a worker thread), then per-gateway acks, then the live hub.
The pure parts (rows, gateway updates, ack ranges) are in `hq.commit_plan` and `hq.fleet`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from gateway import wire
from gateway.mqttlink import Message, MqttError, MqttLink
from gateway.prometheus import Histogram
from hq import store
from hq.clock import now_ms
from hq.commit_plan import CommitPlan, Received, ReceivedBatch, ReceivedStatus, plan_commit
from hq.config import IngestSection
from hq.live import LiveHub
from hq.representations import gateway_json, observation_json

log = logging.getLogger(__name__)

LAG_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 60_000, 300_000, 3_600_000)
DB_RETRY_S = 1.0
ACK_PUBLISH_TIMEOUT_S = 5.0


@dataclass(slots=True)
class IngestStats:
    readings: int = 0  # rows newly stored
    duplicates: int = 0  # rows already present (redelivery)
    batches: int = 0
    statuses: int = 0
    rejected: int = 0  # batches or statuses that broke the wire contract
    shed: int = 0  # batches dropped because the writer queue was full (the gateway resends)
    commit_failures: int = 0
    acks_sent: int = 0
    ack_failures: int = 0
    transactions: int = 0
    lag_ms: Histogram = field(default_factory=lambda: Histogram(LAG_BUCKETS_MS))


class Ingest:
    def __init__(
        self,
        engine: sa.Engine,
        link: MqttLink,
        hub: LiveHub,
        settings: IngestSection,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.engine = engine
        self.link = link
        self.hub = hub
        self.settings = settings
        self.stats = IngestStats()
        self._clock = clock
        # Priority by lane: an alarm batch overtakes backlog batches already waiting for the writer.
        # The counter keeps arrival order within a priority (and spares comparing the items).
        self._queue: asyncio.PriorityQueue[tuple[int, int, Received]] = asyncio.PriorityQueue(
            maxsize=settings.queue_max_batches)
        self._arrivals = itertools.count()
        self._last_hq_ms = 0
        self.writer_alive = False

    # ---- MQTT side (runs in the event loop, must not block) -----------------------------
    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.HQ_DATA_SUBSCRIPTION, 1), (wire.HQ_STATUS_SUBSCRIPTION, 1)]

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def on_message(self, message: Message) -> None:
        if message.topic.endswith("/up/data"):
            self._on_data(message)
        elif message.topic.endswith("/up/status"):
            self._on_status(message)

    def _on_data(self, message: Message) -> None:
        try:
            gateway_id = wire.gateway_of_topic(message.topic)
            batch = wire.decode_batch(message.payload)
            if batch.gateway_id != gateway_id:
                # The broker ACL confines a gateway to its own topics; the payload's claim must agree.
                raise wire.WireError(f"batch says gateway {batch.gateway_id!r} but came on its topic")
        except wire.WireError as exc:
            self.stats.rejected += 1
            log.warning("rejected batch on %s (%d bytes): %s", message.topic, len(message.payload), exc)
            return
        self._enqueue(ReceivedBatch(batch), message.topic)

    def _on_status(self, message: Message) -> None:
        if not message.payload:
            return  # a retained status being cleared
        try:
            gateway_id = wire.gateway_of_topic(message.topic)
            status = wire.decode_status(message.payload)
        except wire.WireError as exc:
            self.stats.rejected += 1
            log.warning("rejected status on %s: %s", message.topic, exc)
            return
        self._enqueue(ReceivedStatus(gateway_id, status, message.retain, self._clock()), message.topic)

    def _enqueue(self, item: Received, topic: str) -> None:
        try:
            self._queue.put_nowait((_priority(item), next(self._arrivals), item))
        except asyncio.QueueFull:
            # paho hands us messages from its socket reader, which cannot wait; shedding is safe because
            # the gateway keeps the batch until acked and resends it after its ack timeout.
            self.stats.shed += 1
            log.warning("ingest queue full (%d); shed message on %s", self._queue.maxsize, topic)

    # ---- writer ------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.run_writer())
            tg.create_task(self.run_sweeper())

    async def run_writer(self) -> None:
        self.writer_alive = True
        try:
            while True:
                items = await self._next_group()
                await self._commit(items)
        finally:
            self.writer_alive = False

    async def _next_group(self) -> list[Received]:
        """Wait for one item, then gather more until the record limit, the flush interval, or an alarm."""
        loop = asyncio.get_running_loop()
        first = (await self._queue.get())[2]
        items = [first]
        records = _records_in(first)
        deadline = loop.time() + self.settings.flush_interval_ms / 1000
        while records < self.settings.max_batch_records and not _is_alarm(items[-1]):
            try:
                item = self._queue.get_nowait()[2]
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        item = (await self._queue.get())[2]
                except TimeoutError:
                    break
            items.append(item)
            records += _records_in(item)
        return items

    def _next_hq_ms(self) -> int:
        # Strictly increasing, so the rows of one transaction are recognisable by their hq_ms.
        self._last_hq_ms = max(self._clock(), self._last_hq_ms + 1)
        return self._last_hq_ms

    async def _commit(self, items: list[Received]) -> None:
        hq_ms = self._next_hq_ms()
        plan = plan_commit(items, hq_ms=hq_ms, offline_after_ms=int(self.settings.offline_after_s * 1000))
        try:
            result = await asyncio.to_thread(store.write_plan, self.engine, plan)
        except sa.exc.SQLAlchemyError as exc:
            self.stats.commit_failures += 1
            log.error("ingest transaction of %d batches, %d statuses failed (gateways resend): %s",
                      plan.batches, plan.statuses, exc)
            await asyncio.sleep(DB_RETRY_S)
            return
        s = self.stats
        s.transactions += 1
        s.batches += plan.batches
        s.statuses += plan.statuses
        s.readings += result.inserted
        s.duplicates += result.duplicates
        for row in result.new_rows:
            s.lag_ms.observe(hq_ms - row["recv_ms"])
        await self._send_acks(plan, result.committed_seq)
        if self.hub.has_clients:
            self.hub.publish_observations(observation_json(r) for r in result.new_rows)
            for row in result.gateway_rows:
                self.hub.publish_gateway(gateway_json(row))

    async def _send_acks(self, plan: CommitPlan, committed_seq: dict[str, int]) -> None:
        gateways = list(plan.acks)
        results = await asyncio.gather(*(
            asyncio.wait_for(self.link.publish(
                wire.ack_topic(gw),
                wire.encode_ack(wire.Ack(plan.acks[gw], committed_seq.get(gw, 0), plan.hq_ms)),
                qos=1,
            ), ACK_PUBLISH_TIMEOUT_S)
            for gw in gateways
        ), return_exceptions=True)
        for gw, outcome in zip(gateways, results, strict=True):
            if isinstance(outcome, BaseException):
                self.stats.ack_failures += 1
                if not isinstance(outcome, MqttError | TimeoutError):
                    raise outcome
                log.warning("ack to gateway %s not sent (it will resend; HQ re-acks): %s", gw, outcome)
            else:
                self.stats.acks_sent += 1

    # ---- silent gateways ----------------------------------------------------------------
    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                await self.sweep()

    async def sweep(self) -> list[str]:
        try:
            rows = await asyncio.to_thread(
                store.mark_silent_offline, self.engine, now_ms=self._clock(),
                offline_after_ms=int(self.settings.offline_after_s * 1000),
            )
        except sa.exc.SQLAlchemyError as exc:
            log.error("offline sweep failed: %s", exc)
            raise
        for row in rows:
            log.info("gateway %s silent for over %.0f s: marked offline", row["id"], self.settings.offline_after_s)
            self.hub.publish_gateway(gateway_json(row))
        return [row["id"] for row in rows]


def _records_in(item: Received) -> int:
    return len(item.batch.records) if isinstance(item, ReceivedBatch) else 1


def _priority(item: Received) -> int:
    """Lower first: statuses (online/offline, device alarms) and alarms, then by lane."""
    return int(item.batch.lane) if isinstance(item, ReceivedBatch) else 0


def _is_alarm(item: Received) -> bool:
    # Alarms are never held back waiting for routine data to share their transaction.
    return isinstance(item, ReceivedBatch) and item.batch.lane is wire.Lane.ALARM
