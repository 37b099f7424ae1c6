"""The relay: one stream of encoded packets (a camera's H.264 as it comes, or what the gateway encoded once)
fanned out to every viewer, each through a bounded queue. No decoding, no encoding here.

A viewer that falls behind loses what it queued and, for video, waits for the next keyframe (memory stays
bounded, latency does not grow). A viewer can be switched to another stream of the same picture (a camera's
low-rate copy) at that stream's next keyframe, so the picture never breaks up. It is not aiortc's MediaRelay,
which relays decoded frames (each viewer then encodes its own copy) through unbounded queues.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

RATE_WINDOW_S = 3.0


class RateMeter:
    """Bytes and units per second over the last few seconds."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._bytes = 0

    def add(self, size: int, now_s: float) -> None:
        self._samples.append((now_s, size))
        self._bytes += size
        self._trim(now_s)

    def _trim(self, now_s: float) -> None:
        while self._samples and now_s - self._samples[0][0] > self.window_s:
            self._bytes -= self._samples.popleft()[1]

    def kbps(self, now_s: float) -> float:
        self._trim(now_s)
        return self._bytes * 8 / 1000 / self.window_s

    def per_second(self, now_s: float) -> float:
        self._trim(now_s)
        return len(self._samples) / self.window_s


@dataclass(slots=True)
class ViewerCounters:
    packets: int = 0
    bytes: int = 0
    dropped: int = 0  # packets thrown away because the viewer fell behind, or while it waited for a keyframe
    overflows: int = 0
    switches: int = 0


class PacketRelay:
    """Fans one encoded stream out. `push` is called by the source for each packet (an access unit for video,
    an Opus packet for audio) with its timestamp already set; `subscribe` gives a viewer its track."""

    def __init__(self, name: str, kind: str, *, max_queued: int | None = None,
                 on_keyframe_wanted: Callable[[], None] | None = None) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"kind {kind!r} must be 'audio' or 'video'")
        self.name = name
        self.kind = kind
        self.keyframes = kind == "video"  # audio packets each stand alone
        # About 2 s: a viewer further behind than that is better off skipping ahead.
        self.max_queued = max_queued or (60 if kind == "video" else 100)
        self.on_keyframe_wanted = on_keyframe_wanted
        self.packets_in = 0
        self.meter = RateMeter()
        self.last_push_s: float | None = None
        self._tracks: set[RelayedTrack] = set()

    @property
    def viewers(self) -> int:
        return len(self._tracks)

    def kbps(self) -> float:
        return self.meter.kbps(time.monotonic())

    def fps(self) -> float:
        return self.meter.per_second(time.monotonic())

    def subscribe(self) -> RelayedTrack:
        track = RelayedTrack(self.kind)
        track.switch(self)
        return track

    def push(self, packet: av.Packet[Any], keyframe: bool) -> None:
        now = time.monotonic()
        self.packets_in += 1
        self.meter.add(packet.size, now)
        self.last_push_s = now
        for track in list(self._tracks):
            track._offer(self, packet, keyframe)

    def restart(self) -> None:
        """The source started over (a camera reconnected): what follows does not continue what came before,
        so every viewer waits for the next keyframe."""
        if self.keyframes:
            for track in self._tracks:
                track._resync(self)

    def want_keyframe(self) -> None:
        if self.on_keyframe_wanted is not None:
            self.on_keyframe_wanted()

    def _attach(self, track: RelayedTrack) -> None:
        self._tracks.add(track)

    def _detach(self, track: RelayedTrack) -> None:
        self._tracks.discard(track)


class RelayedTrack(MediaStreamTrack):
    """What one viewer's RTP sender reads: packets from its current relay, at most `max_queued` behind."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.counters = ViewerCounters()
        self.meter = RateMeter()
        self._source: PacketRelay | None = None
        self._pending: PacketRelay | None = None  # switching to it at its next keyframe
        self._waiting_keyframe = True
        self._queue: collections.deque[tuple[av.Packet[Any], bool]] = collections.deque()  # (packet, keyframe)
        self._ready = asyncio.Event()

    @property
    def source(self) -> PacketRelay | None:
        """The relay this viewer gets packets from now (not the one it is switching to)."""
        return self._source

    @property
    def target(self) -> PacketRelay | None:
        """Where this viewer is going: the pending relay of a switch, else the current one."""
        return self._pending or self._source

    def switch(self, relay: PacketRelay | None) -> None:
        """Take packets from `relay` from its next keyframe on (None: send nothing, e.g. voice only)."""
        if self.readyState != "live" or relay is self.target:
            return
        self.counters.switches += 1
        if self._pending is not None:
            self._pending._detach(self)
            self._pending = None
        if relay is not None and relay is self._source:
            return  # back to where it is: the pending switch is called off
        if relay is None:
            self._drop_source()
            self._queue.clear()
            return
        if self._source is None or not relay.keyframes:
            self._drop_source()
            self._source = relay
            self._waiting_keyframe = relay.keyframes
        else:
            self._pending = relay  # the old source goes on until the new one has a keyframe
        relay._attach(self)
        relay.want_keyframe()

    def _resync(self, relay: PacketRelay) -> None:
        if relay is self._source:
            self._waiting_keyframe = True

    def _drop_source(self) -> None:
        if self._source is not None:
            self._source._detach(self)
            self._source = None

    def _offer(self, relay: PacketRelay, packet: av.Packet[Any], keyframe: bool) -> None:
        if relay is self._pending:
            if not keyframe:
                return
            self._drop_source()
            self._source, self._pending = relay, None
            self._waiting_keyframe = False
        elif relay is not self._source:
            return
        if self._waiting_keyframe:
            if not keyframe:
                self.counters.dropped += 1
                return
            self._waiting_keyframe = False
        if len(self._queue) >= relay.max_queued:
            # This viewer cannot keep up: skip ahead rather than let its latency (and our memory) grow.
            self.counters.overflows += 1
            if not relay.keyframes:
                self._queue.popleft()
                self.counters.dropped += 1
            elif not self._skip_to_last_keyframe():
                self.counters.dropped += len(self._queue) + (not keyframe)
                self._queue.clear()
                if not keyframe:
                    self._waiting_keyframe = True
                    relay.want_keyframe()
                    return
        self._queue.append((packet, keyframe))
        self._ready.set()

    def _skip_to_last_keyframe(self) -> bool:
        """Drop what precedes the newest queued keyframe; False if there is none to skip to."""
        last = next((i for i in range(len(self._queue) - 1, 0, -1) if self._queue[i][1]), None)
        if last is None:
            return False
        for _ in range(last):
            self._queue.popleft()
        self.counters.dropped += last
        return True

    async def recv(self) -> av.Packet[Any]:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        packet, _keyframe = self._queue.popleft()
        self.counters.packets += 1
        self.counters.bytes += packet.size
        self.meter.add(packet.size, time.monotonic())
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            self._drop_source()
            if self._pending is not None:
                self._pending._detach(self)
                self._pending = None
            self._queue.clear()
        super().stop()
        self._ready.set()  # a recv() waiting now ends with MediaStreamError
