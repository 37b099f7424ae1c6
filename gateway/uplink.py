"""The Uplink: drains the outbox to HQ over MQTT, highest-priority lane first, and removes entries
only when HQ's acknowledgement says it committed them. It also publishes the gateway's status,
carries out HQ's replay requests and expires confirmed entries after their retention.

It does not store anything itself: after a crash or reconnect it resends whatever is still in the
outbox (HQ deduplicates by (gateway_id, seq)).

An ack confirms exactly the entries of the batches it covers, not every seq in its range: an entry
can enter a lane later with a seq inside a range already sent (a replay, a demotion after a resend),
and must not be taken for confirmed before it went out.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from gateway import wire
from gateway.mqttlink import Message, MqttError, MqttLink
from gateway.outbox import Outbox, OutboxError
from gateway.wire import Lane

log = logging.getLogger(__name__)

# Live vitals come in small batches all the time; limited to this share of the in-flight window, they
# cannot keep a draining backlog from ever getting a slot. Alarms are never limited.
LIVE_VITALS_SHARE = 0.25
PUBLISH_RETRY_S = 0.2
MAX_AWAITING_ACK = 1024  # batches remembered for a late ack; beyond it the oldest are resent instead
EXPIRE_INTERVAL_S = 60.0

BatchKey = tuple[Lane, int, int]


def seq_runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending seqs as runs of consecutive numbers: [1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]."""
    runs: list[tuple[int, int]] = []
    for _, group in itertools.groupby(enumerate(seqs), key=lambda pair: pair[1] - pair[0]):
        members = [seq for _, seq in group]
        runs.append((members[0], members[-1]))
    return runs


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
    replays: int = 0
    replayed_records: int = 0
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
        max_inflight_batches: int = 32,
        ack_timeout_s: float = 15.0,
        live_window_s: float = 60.0,
        status_source: Callable[[], Awaitable[wire.Status]] | None = None,
        heartbeat_s: float = 10.0,
        retain_sent_s: float = 0.0,
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
        self.retain_sent_s = retain_sent_s
        self._status_source = status_source
        self._cursor: dict[Lane, int] = dict.fromkeys(Lane, 0)
        self._inflight: dict[BatchKey, InFlight] = {}
        # Every batch sent and not yet confirmed, with its seq runs; outlives resends and reconnects,
        # since HQ may still confirm a batch sent on an earlier connection.
        self._awaiting_ack: OrderedDict[BatchKey, list[tuple[int, int]]] = OrderedDict()
        # Entries moved into a lane behind its read position (demotion, replay): read it again from there.
        self._rewind: dict[Lane, int] = {}
        self._wake = asyncio.Event()
        self._status_due = asyncio.Event()
        self._ack_tasks: set[asyncio.Task[None]] = set()
        self._publishing: set[asyncio.Task[None]] = set()
        self._paused_until = 0.0  # after a failed publish, a short pause instead of a tight retry loop
        self.stats = UplinkStats()
        self.committed_seq = 0

    # ---- wiring with the link -------------------------------------------------------------
    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.ack_topic(self.gateway_id), 1), (wire.replay_topic(self.gateway_id), 1)]

    def on_connect(self) -> None:
        # Whatever was in flight on the old connection may be lost: resend everything unacked.
        self._reset_all()
        self._status_due.set()
        self._wake.set()

    def on_disconnect(self) -> None:
        self._reset_all()

    def on_message(self, message: Message) -> None:
        work: Awaitable[None]
        try:
            if message.topic == wire.ack_topic(self.gateway_id):
                work = self._apply_ack(wire.decode_ack(message.payload))
            elif message.topic == wire.replay_topic(self.gateway_id):
                if not message.payload:
                    return  # HQ cleared a retained request
                work = self._replay(wire.decode_replay(message.payload))
            else:
                return
        except wire.WireError as exc:
            self.stats.acks_rejected += 1
            log.error("ignoring malformed message on %s: %s", message.topic, exc)
            return
        task = asyncio.get_running_loop().create_task(work)
        # The loop keeps only weak references to tasks: hold on until the work is done.
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
            if self.retain_sent_s:
                tg.create_task(self._expire_loop())

    async def _demote_loop(self) -> None:
        """Vitals older than the live window become backlog: after an outage, what is happening now
        reaches HQ before what happened hours ago."""
        while True:
            # Read each time: HQ may change the live window while the gateway runs.
            await asyncio.sleep(max(1.0, self.live_window_s / 12))
            cutoff = clock_ms() - int(self.live_window_s * 1000)
            # Only vitals above everything read from the backlog lane: an entry landing behind its
            # read position would wait there until the next reconnect.
            after = max(self._cursor[Lane.VITALS], self._cursor[Lane.BACKLOG])
            try:
                moved = await self.outbox.demote_stale_vitals(cutoff, after)
            except OutboxError as exc:
                log.error("moving stale vitals to the backlog lane failed: %s", exc)
                continue
            if moved:
                self._rewind_lane(Lane.BACKLOG, after)
                log.info("%d vitals older than %.0f s moved to the backlog lane", moved, self.live_window_s)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(EXPIRE_INTERVAL_S)
            try:
                expired = await self.outbox.expire_sent(clock_ms() - int(self.retain_sent_s * 1000))
            except OutboxError as exc:
                log.error("expiring confirmed entries failed: %s", exc)
                continue
            if expired:
                log.info("%d entries HQ confirmed over %.0f h ago deleted", expired, self.retain_sent_s / 3600)

    async def _replay(self, replay: wire.Replay) -> None:
        try:
            moved = await self.outbox.replay_from(replay.request_id, replay.from_seq)
        except OutboxError as exc:
            log.error("replay request %s failed: %s", replay.request_id, exc)
            return
        if moved is None:
            log.debug("replay request %s already carried out", replay.request_id)
            return
        self.stats.replays += 1
        self.stats.replayed_records += moved
        log.warning("HQ restored its database (request %s): %d kept entries from seq %d go out again",
                    replay.request_id, moved, replay.from_seq)
        # Replayed entries sit behind every read position: read every lane again from the start.
        self._awaiting_ack.clear()
        self._reset_all()
        for lane in Lane:
            self._rewind_lane(lane, 0)

    def _rewind_lane(self, lane: Lane, to_seq: int) -> None:
        self._rewind[lane] = min(to_seq, self._rewind.get(lane, to_seq))
        self._apply_rewinds()
        self._wake.set()

    def _apply_rewinds(self) -> None:
        # Also called right after a read sets a cursor: a move that finished while the read was under
        # way may have put entries behind the position the read started from.
        for lane, to_seq in self._rewind.items():
            self._cursor[lane] = min(self._cursor[lane], to_seq)
        self._rewind.clear()

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
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
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

    def _lane_has_room(self, lane: Lane) -> bool:
        if lane is not Lane.VITALS:
            return True
        share = max(1, int(self.max_inflight_batches * LIVE_VITALS_SHARE))
        return sum(1 for key in self._inflight if key[0] is Lane.VITALS) < share

    async def _send_next(self) -> bool:
        """Read the next batch of the highest lane with unsent entries and start publishing it. The
        PUBACK is not awaited here: batches go out back to back up to the in-flight window, which is
        what keeps the drain rate up across a long round trip."""
        for lane in Lane:  # IntEnum order: highest priority first
            if self.outbox.count(lane) == 0 or not self._lane_has_room(lane):
                continue
            records = await self.outbox.read_lane(lane, self._cursor[lane], self.batch_max_records)
            if not records:
                continue
            batch = wire.Batch(self.gateway_id, self.clinic_id, lane, clock_ms(), records,
                               floor=await self.outbox.floor())
            key = (lane, batch.first_seq, batch.last_seq)
            self._cursor[lane] = batch.last_seq
            self._apply_rewinds()
            self._inflight[key] = InFlight(lane, batch.first_seq, batch.last_seq, len(records), time.monotonic())
            self._awaiting_ack[key] = seq_runs(r.seq for r in records)
            self._awaiting_ack.move_to_end(key)
            while len(self._awaiting_ack) > MAX_AWAITING_ACK:
                self._awaiting_ack.popitem(last=False)
            # Tasks start in creation order, so batches reach the client (and the broker) in order.
            task = asyncio.get_running_loop().create_task(self._publish(batch))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
            self.stats.batches_sent += 1
            self.stats.records_sent += len(records)
            return True
        return False

    async def _publish(self, batch: wire.Batch) -> None:
        try:
            await self.link.publish(wire.data_topic(self.gateway_id), wire.encode_batch(batch), qos=1)
        except MqttError as exc:
            self.stats.publish_errors += 1
            log.warning("publishing batch %s..%s (lane %s) failed: %s",
                        batch.first_seq, batch.last_seq, batch.lane.name, exc)
            if (batch.lane, batch.first_seq, batch.last_seq) in self._inflight:
                self._reset_lane(batch.lane)
            self._paused_until = time.monotonic() + PUBLISH_RETRY_S
            self._wake.set()

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
        confirmed: list[tuple[Lane, int, int]] = []
        forgotten: set[Lane] = set()
        for lane, first, last in ack.ranges:
            for key in [k for k in self._inflight if k[0] == lane and k[1] >= first and k[2] <= last]:
                del self._inflight[key]
                if key not in self._awaiting_ack:
                    forgotten.add(lane)  # evicted: its entries stay, so read the lane again
            for key in [k for k in self._awaiting_ack if k[0] == lane and k[1] >= first and k[2] <= last]:
                confirmed += [(lane, a, b) for a, b in self._awaiting_ack.pop(key)]
        for lane in forgotten:
            self._reset_lane(lane)
        try:
            removed = await self.outbox.remove_acked(confirmed)
        except Exception as exc:
            log.error("removing acked entries failed: %s; they go out again", exc)
            for lane in {lane for lane, _first, _last in confirmed}:
                self._reset_lane(lane)
            return
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
