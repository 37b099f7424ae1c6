"""`Ingest`: consumes gateway batches and statuses from MQTT, commits them idempotently in groups, then acks.

Order per group: one DB transaction (in a worker thread), then per-gateway acks, then the live hub; the next
group is planned while one is in the database. The pure parts are in `hq.commit_plan` and `hq.fleet`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import operator
import zlib
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
from hq.gateway_events import GatewayEvents
from hq.live import LiveHub
from hq.representations import gateway_json, observation_json

log = logging.getLogger(__name__)

WriterQueue = asyncio.PriorityQueue[tuple[int, int, Received]]

LAG_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 60_000, 300_000, 3_600_000)
DB_RETRY_S = 1.0
ACK_PUBLISH_TIMEOUT_S = 5.0
POSTGRES_WRITERS = 2  # connections writing at once (a transaction each) on PostgreSQL
URGENT = int(wire.Lane.ALARM)  # queue priority of alarm batches, shared by statuses


@dataclass(slots=True)
class IngestStats:
    readings: int = 0  # rows newly stored
    duplicates: int = 0  # rows already present (redelivery)
    batches: int = 0
    statuses: int = 0
    rejected: int = 0  # batches or statuses that broke the wire contract
    refused: int = 0  # batches or statuses from revoked gateways, dropped
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
        events: GatewayEvents | None = None,
        on_gateway_online: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.link = link
        self.hub = hub
        self.settings = settings
        self.events = events
        # Called after a commit that queued downlink notices or saw a gateway come online (they may wait).
        self._downlink_due = on_gateway_online
        self.stats = IngestStats()
        self._clock = clock
        # One writer (a queue, a transaction at a time) per database connection; a gateway's messages
        # always go to the same writer, so its rows and its gateways row are only ever written by one
        # transaction at a time, in arrival order. SQLite has one writer anyway.
        count = POSTGRES_WRITERS if engine.dialect.name == "postgresql" else 1
        # Priority by lane: an alarm batch overtakes backlog batches already waiting for the writer.
        # The counter keeps arrival order within a priority (and spares comparing the items).
        self._queues: list[WriterQueue] = [asyncio.PriorityQueue() for _ in range(count)]
        self._arrivals = itertools.count()
        self._last_hq_ms = 0
        self._acking: set[asyncio.Task[None]] = set()
        self._ack_crash: BaseException | None = None
        self.writer_alive = False
        # Revoked gateways (kept up to date by hq.app): their messages are dropped even if the broker still
        # lets them through (it is told to deny them, and refuses their certificate once it reloads the CRL).
        self.refused_gateways: set[str] = set()
        self._refusal_logged: set[str] = set()

    # ---- MQTT side (runs in the event loop, must not block) -----------------------------
    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.HQ_DATA_SUBSCRIPTION, 1), (wire.HQ_STATUS_SUBSCRIPTION, 1)]

    @property
    def queue_depth(self) -> int:
        return sum(q.qsize() for q in self._queues)

    def on_message(self, message: Message) -> None:
        if self.refused_gateways and self._refused(message.topic):
            return
        if message.topic.endswith("/up/data"):
            self._on_data(message)
        elif message.topic.endswith("/up/status"):
            self._on_status(message)

    def _refused(self, topic: str) -> bool:
        try:
            gateway_id = wire.gateway_of_topic(topic)
        except wire.WireError:
            return False
        if gateway_id not in self.refused_gateways:
            return False
        self.stats.refused += 1
        if gateway_id not in self._refusal_logged:
            self._refusal_logged.add(gateway_id)
            log.warning("dropping messages from revoked gateway %s (logged once)", gateway_id)
        return True

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
        if self.queue_depth >= self.settings.queue_max_batches:
            # paho hands us messages from its socket reader, which cannot wait; shedding is safe because
            # the gateway keeps the batch until acked and resends it after its ack timeout.
            self.stats.shed += 1
            log.warning("ingest queue full (%d); shed message on %s", self.settings.queue_max_batches, topic)
            return
        gateway_id = item.batch.gateway_id if isinstance(item, ReceivedBatch) else item.gateway_id
        queue = self._queues[zlib.crc32(gateway_id.encode()) % len(self._queues)]
        queue.put_nowait((_priority(item), next(self._arrivals), item))

    # ---- writer ------------------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.run_writer())
            tg.create_task(self.run_sweeper())

    async def run_writer(self) -> None:
        self.writer_alive = True
        try:
            async with asyncio.TaskGroup() as tg:
                for queue in self._queues:
                    tg.create_task(self._run_writer(queue))
        finally:
            for task in list(self._acking):
                task.cancel()
            self.writer_alive = False

    async def _run_writer(self, queue: WriterQueue) -> None:
        """Commit group after group, one transaction at a time, pipelined: while a group is in the database
        (a worker thread), the next one is gathered and planned on the loop, and each group's acks go out
        without holding up the next transaction. Acks still leave only after their own group committed."""
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                items = await self._next_group(queue)
                plan = self._plan(items)
                if writing is not None:
                    await writing
                    self._raise_if_acks_crashed()
                # Alarms that came while the group was gathered or waited for the database go first, alone.
                urgent = _take_urgent(queue)
                if urgent:
                    await self._commit(self._plan(urgent))
                writing = asyncio.create_task(self._commit(plan))
        finally:
            if writing is not None:
                writing.cancel()

    async def _next_group(self, queue: WriterQueue) -> list[Received]:
        """Wait for one item, then gather more until the record limit or the flush interval.

        An alarm batch is never held back: first in the queue, it is a group of its own; arriving later, it
        ends the group and stays in the queue, for `_take_urgent` to commit before this group.
        """
        loop = asyncio.get_running_loop()
        first = (await queue.get())[2]
        items = [first]
        if _is_alarm(first):
            return items
        records = _records_in(first)
        deadline = loop.time() + self.settings.flush_interval_ms / 1000
        while records < self.settings.max_batch_records:
            try:
                entry = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        entry = await queue.get()
                except TimeoutError:
                    break
            if _is_alarm(entry[2]):
                queue.put_nowait(entry)  # unbounded queue: the limit is on all queues together
                break
            items.append(entry[2])
            records += _records_in(entry[2])
        return items

    def _next_hq_ms(self) -> int:
        # Strictly increasing, so the rows of one transaction are recognisable by their hq_ms.
        self._last_hq_ms = max(self._clock(), self._last_hq_ms + 1)
        return self._last_hq_ms

    def _plan(self, items: list[Received]) -> CommitPlan:
        plan = plan_commit(items, hq_ms=self._next_hq_ms(), offline_after_ms=int(self.settings.offline_after_s * 1000))
        # The transaction updates the gateways rows in this order: the same order in every transaction (of
        # this worker and of other HQ workers on the same database) so that they wait for each other
        # instead of deadlocking (measured with two HQ workers on PostgreSQL: several deadlocks a minute).
        plan.gateways = dict(sorted(plan.gateways.items()))
        return plan

    async def _commit(self, plan: CommitPlan) -> None:
        """One transaction; then the acks are sent in the background and the live hub is fed."""
        try:
            result = await asyncio.to_thread(store.write_plan, self.engine, plan, self.events)
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
        # Readings of one device message share their receive time: one observation per distinct time.
        for recv_ms, times in collections.Counter(map(operator.itemgetter("recv_ms"), result.new_rows)).items():
            s.lag_ms.observe(plan.hq_ms - recv_ms, times)
        if plan.acks:
            # Tasks start in creation order, so a gateway gets its acks in commit order.
            task = asyncio.create_task(self._send_acks(plan, result.committed_seq))
            self._acking.add(task)
            task.add_done_callback(self._ack_done)
        if self.hub.has_clients:
            self.hub.publish_observations(observation_json(r) for r in result.new_rows)
            for row in result.gateway_rows:
                self.hub.publish_gateway(gateway_json(row))
        for notice in result.events.notices:
            self.hub.notify(notice.message, user_ids=notice.user_ids, roles=notice.roles, clinic_id=notice.clinic_id)
        if self._downlink_due is not None and (result.events.downlink_queued or any(
                u.state is wire.GatewayState.ONLINE for u in plan.gateways.values())):
            self._downlink_due()

    def _ack_done(self, task: asyncio.Task[None]) -> None:
        self._acking.discard(task)
        if not task.cancelled() and task.exception() is not None and self._ack_crash is None:
            self._ack_crash = task.exception()

    def _raise_if_acks_crashed(self) -> None:
        # `_send_acks` re-raises only what is not a transport failure, i.e. a bug: it stops the writer.
        if self._ack_crash is not None:
            raise self._ack_crash

    async def _send_acks(self, plan: CommitPlan, committed_seq: dict[str, int]) -> None:
        gateways = list(plan.acks)
        results = await asyncio.gather(*(
            self.link.publish(
                wire.ack_topic(gw),
                wire.encode_ack(wire.Ack(plan.acks[gw], committed_seq.get(gw, 0), plan.hq_ms)),
                qos=1, timeout_s=ACK_PUBLISH_TIMEOUT_S,
            )
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


def _take_urgent(queue: WriterQueue) -> list[Received]:
    """The waiting top-priority items (statuses, alarm batches) if an alarm is among them, else none."""
    taken: list[tuple[int, int, Received]] = []
    while not queue.empty():
        entry = queue.get_nowait()
        taken.append(entry)
        if entry[0] != URGENT:
            break
    urgent = [entry[2] for entry in taken if entry[0] == URGENT]
    if any(_is_alarm(item) for item in urgent):
        taken = [entry for entry in taken if entry[0] != URGENT]
    else:
        urgent = []
    for entry in taken:  # back where they were (unbounded queues: the limit is on all of them together)
        queue.put_nowait(entry)
    return urgent


def _records_in(item: Received) -> int:
    return len(item.batch.records) if isinstance(item, ReceivedBatch) else 1


def _priority(item: Received) -> int:
    """Lower first: statuses (online/offline, device alarms) and alarms, then by lane."""
    return int(item.batch.lane) if isinstance(item, ReceivedBatch) else URGENT


def _is_alarm(item: Received) -> bool:
    # Alarms are never held back waiting for routine data to share their transaction.
    return isinstance(item, ReceivedBatch) and item.batch.lane is wire.Lane.ALARM
