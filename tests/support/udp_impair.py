"""A bad network for UDP, in user space (this machine has no sch_netem): a relay in front of a server (the TURN
server, so that a participant's media must cross it) that loses, delays, rate-limits with a bounded queue, or
blacks out packets, in each direction. Runs its own event loop in a thread, so a busy test loop does not add
delays of its own; the settings can change while traffic flows.
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Impairment:
    loss: float = 0.0  # share of packets dropped at random
    delay_ms: float = 0.0
    jitter_ms: float = 0.0  # added to the delay, uniformly in [0, jitter)
    rate_kbps: float | None = None  # the link's capacity; None: unlimited
    queue_ms: float = 150.0  # the bottleneck's buffer: what does not fit is dropped (tail drop)
    blackout: bool = False  # drop everything


@dataclass
class DirectionStats:
    forwarded: int = 0
    lost: int = 0
    overflowed: int = 0
    blacked_out: int = 0
    bytes: int = 0


@dataclass
class _Direction:
    stats: DirectionStats = field(default_factory=DirectionStats)
    queue: collections.deque[tuple[bytes, Any]] = field(default_factory=collections.deque)
    queued_bytes: int = 0
    busy_until: float = 0.0
    draining: bool = False


class UdpImpairment:
    """`with UdpImpairment(("127.0.0.1", turn.port)) as link:` clients use ("127.0.0.1", link.port)."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", seed: int = 5) -> None:
        self.target = target
        self.host = host
        self.port = 0
        self.settings = Impairment()
        self.up, self.down = _Direction(), _Direction()  # up: client -> server
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="udp-impair", daemon=True)
        self._listener: asyncio.DatagramTransport | None = None
        self._upstreams: dict[Any, asyncio.DatagramTransport | list[bytes]] = {}

    # ---- control (any thread) ------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)

    def stop(self) -> None:
        def close() -> None:
            for upstream in self._upstreams.values():
                if not isinstance(upstream, list):
                    upstream.close()
            if self._listener is not None:
                self._listener.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(close)
        self._thread.join(5)

    def set(self, **settings: Any) -> None:
        """Replace the impairment (fields of `Impairment`; what is not given goes back to its default)."""
        fresh = Impairment(**settings)
        self._loop.call_soon_threadsafe(setattr, self, "settings", fresh)

    def __enter__(self) -> UdpImpairment:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the relay (its own loop) --------------------------------------------------------------
    async def _listen(self) -> None:
        relay = self

        class Listener(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                relay._from_client(data, addr)

        transport, _ = await self._loop.create_datagram_endpoint(Listener, local_addr=(self.host, 0))
        self._listener = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    def _from_client(self, data: bytes, client: Any) -> None:
        upstream = self._upstreams.get(client)
        if upstream is None:
            self._upstreams[client] = [data]  # packets wait for the upstream socket to open
            self._loop.create_task(self._open_upstream(client))
        elif isinstance(upstream, list):
            upstream.append(data)
        else:
            self._through(self.up, data, upstream.sendto)

    async def _open_upstream(self, client: Any) -> None:
        relay = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                listener = relay._listener
                if listener is not None:
                    relay._through(relay.down, data, lambda d: listener.sendto(d, client))

        transport, _ = await self._loop.create_datagram_endpoint(Upstream, remote_addr=self.target)
        waiting = self._upstreams.get(client)
        self._upstreams[client] = transport
        for data in waiting if isinstance(waiting, list) else []:
            self._through(self.up, data, transport.sendto)

    def _through(self, direction: _Direction, data: bytes, send: Any) -> None:
        s, stats = self.settings, direction.stats
        if s.blackout:
            stats.blacked_out += 1
            return
        if s.loss and self._rng.random() < s.loss:
            stats.lost += 1
            return
        if s.rate_kbps is None:
            self._deliver(direction, data, send)
            return
        capacity = s.rate_kbps * 1000 / 8 * s.queue_ms / 1000
        if direction.queued_bytes + len(data) > capacity:
            stats.overflowed += 1
            return
        direction.queue.append((data, send))
        direction.queued_bytes += len(data)
        if not direction.draining:
            direction.draining = True
            self._loop.call_soon(self._drain, direction)

    def _drain(self, direction: _Direction) -> None:
        """Serialise queued packets at the link's rate (a bottleneck), then delay them."""
        now = time.monotonic()
        s = self.settings
        while direction.queue:
            if direction.busy_until > now:
                self._loop.call_later(direction.busy_until - now, self._drain, direction)
                return
            data, send = direction.queue.popleft()
            direction.queued_bytes -= len(data)
            rate = (s.rate_kbps or 1e9) * 1000 / 8
            direction.busy_until = max(direction.busy_until, now) + len(data) / rate
            self._deliver(direction, data, send)
        direction.draining = False

    def _deliver(self, direction: _Direction, data: bytes, send: Any) -> None:
        s = self.settings
        delay = (s.delay_ms + (self._rng.random() * s.jitter_ms if s.jitter_ms else 0)) / 1000
        direction.stats.forwarded += 1
        direction.stats.bytes += len(data)
        if delay > 0:
            self._loop.call_later(delay, send, data)
        else:
            send(data)
