"""A TCP proxy the tests control, standing in for the WAN between a gateway and its broker: one-way delay,
outages (a blackhole or resets), stalls for packet loss, random connection drops and byte counters.

It is not a packet-level emulator. TCP over a proxy cannot lose single bytes: the kernels on both sides
retransmit, so a lost segment shows up to the applications only as a stall of the stream (head-of-line
blocking for about one retransmission timeout) or, after long enough, as a dead connection. `loss` models
the first (a chunk held back `rto_ms` more, and everything behind it with it), `resets_per_s` the second.
Use it where `tc netem` is unavailable (no sch_netem module) or where a test needs to cut and restore the
link on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import socket
import struct
import threading
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.support.ports import free_port

T = TypeVar("T")

_CHUNK_BYTES = 64 * 1024
_EOF = b""  # queued after the last chunk of a direction whose source closed cleanly (FIN)
_RST_MARKER = object()  # queued instead when the source reset the connection


class CutMode(enum.Enum):
    """How an outage looks to the endpoints."""

    BLACKHOLE = "blackhole"  # packets vanish: open connections stay open with nothing passing (only an
    #                          application keep-alive notices); new connections get no answer
    RESET = "reset"  # every open connection is reset at once (RST both ways); new ones are refused (RST)


class Direction(enum.Enum):
    UP = "up"  # client -> target (gateway -> broker)
    DOWN = "down"  # target -> client (broker -> gateway)


@dataclass
class Counters:
    """Read from any thread; updated only on the proxy's loop."""

    bytes_up: int = 0  # delivered to the target
    bytes_down: int = 0  # delivered to the client
    connections_accepted: int = 0
    connections_refused: int = 0  # reset at once because the link was cut in RESET mode
    connections_reset: int = 0  # open connections the proxy reset (cut, random drop, held past an outage)
    stalls: int = 0  # chunks held back for a simulated retransmission


class _Pipe:
    """One direction of one connection: a timestamped queue of chunks, released in order when due."""

    def __init__(self, proxy: NetProxy, direction: Direction, source: asyncio.StreamReader) -> None:
        self.proxy = proxy
        self.direction = direction
        self.source = source
        self.queue: deque[tuple[float, bytes | object]] = deque()
        self.queued_bytes = 0
        self.last_release = 0.0
        self.ended = False  # EOF or reset queued: nothing more will be read
        self.has_data = asyncio.Event()
        self.has_room = asyncio.Event()
        self.has_room.set()

    def _push(self, item: bytes | object) -> None:
        p = self.proxy
        now = p.loop.time()
        release = max(now + p.delay_s(self.direction), self.last_release)
        if isinstance(item, bytes) and item and p.loss and p.rng.random() < p.loss:
            release += p.rto_ms / 1000
            p.counters.stalls += 1
        self.last_release = release
        self.queue.append((release, item))
        if isinstance(item, bytes):
            self.queued_bytes += len(item)
            if self.queued_bytes >= p.buffer_bytes:
                self.has_room.clear()
        self.has_data.set()

    async def read_loop(self) -> None:
        """Reads as fast as the source sends, up to `buffer_bytes` in flight (the network's capacity)."""
        try:
            while True:
                await self.has_room.wait()
                data = await self.source.read(_CHUNK_BYTES)
                if not data:
                    self._push(_EOF)
                    break
                self._push(data)
        except (ConnectionError, OSError):
            self._push(_RST_MARKER)
        finally:
            self.ended = True

    async def write_loop(self, conn: _Connection, sink: asyncio.StreamWriter) -> None:
        p = self.proxy
        while True:
            while not self.queue:
                self.has_data.clear()
                await self.has_data.wait()
            due = self.queue[0][0] - p.loop.time()
            if due > 0:
                await asyncio.sleep(due)
            await p.passing[self.direction].wait()  # a blackhole: what is in flight waits in the network
            out: list[bytes] = []
            now = p.loop.time()
            end: bytes | object | None = None
            while self.queue and self.queue[0][0] <= now:
                _, item = self.queue.popleft()
                if item is _RST_MARKER or item == _EOF:
                    end = item
                    break
                assert isinstance(item, bytes)
                out.append(item)
            if out:
                chunk = b"".join(out)
                self.queued_bytes -= len(chunk)
                if self.queued_bytes < p.buffer_bytes:
                    self.has_room.set()
                if self.direction is Direction.UP:
                    p.counters.bytes_up += len(chunk)
                else:
                    p.counters.bytes_down += len(chunk)
                try:
                    sink.write(chunk)
                    await sink.drain()
                except (ConnectionError, OSError):
                    conn.reset()
                    return
            if end is _RST_MARKER:
                conn.reset()
                return
            if end is not None:  # FIN: half-close towards the sink
                with contextlib.suppress(OSError, RuntimeError):
                    if sink.can_write_eof():
                        sink.write_eof()
                return


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN, as a middlebox or a dead peer's kernel would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Connection:
    def __init__(self, proxy: NetProxy, client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client_writer = client_writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.up = _Pipe(proxy, Direction.UP, client_reader)
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.proxy.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def reset(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.proxy.counters.connections_reset += 1
        _reset(self.client_writer)
        if self.upstream_writer is not None:
            _reset(self.upstream_writer)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()

    async def serve(self) -> None:
        p = self.proxy
        self.spawn(self.up.read_loop())  # the client's first bytes travel (or wait) in the network
        if not p.link_up.is_set():
            # A blackhole: this SYN "vanished". The client is left waiting for an answer; if it gives up
            # before the link returns, it never got through, so the target must not see it either.
            await p.link_up.wait()
            if self.up.ended:
                self.reset()
                return
        if self.closed.is_set():
            return
        try:
            up_reader, self.upstream_writer = await asyncio.open_connection(p.target_host, p.target_port)
        except OSError:
            self.reset()  # the target is down: the client sees a reset, like a refused connection
            return
        if self.closed.is_set():  # reset (a cut) while connecting
            _reset(self.upstream_writer)
            return
        down = _Pipe(p, Direction.DOWN, up_reader)
        self.spawn(down.read_loop())
        writers = [p.loop.create_task(self.up.write_loop(self, self.upstream_writer)),
                   p.loop.create_task(down.write_loop(self, self.client_writer))]
        for task in writers:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*writers)
        if not self.closed.is_set():  # both directions ended with FIN: close normally
            self.closed.set()
            for w in (self.client_writer, self.upstream_writer):
                w.close()


class NetProxy:
    """`with NetProxy(host, port, delay_up_ms=50, delay_down_ms=50) as proxy:` connect to `proxy.port`.

    The proxy runs an asyncio loop in its own thread, so it keeps forwarding while the test thread sleeps
    or polls; every method here is called from the test thread. Delay is a timestamped queue per direction,
    not a sleep per read: throughput is bounded by `buffer_bytes` per RTT (like a TCP window), not by one
    read per RTT.
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int | None = None,
                 delay_up_ms: float = 0.0, delay_down_ms: float = 0.0, loss: float = 0.0, rto_ms: float = 200.0,
                 resets_per_s: float = 0.0, buffer_bytes: int = 4 * 1024 * 1024, seed: int | None = None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port or free_port(host)
        self.delay_up_ms = delay_up_ms
        self.delay_down_ms = delay_down_ms
        self.loss = loss
        self.rto_ms = rto_ms
        self.resets_per_s = resets_per_s
        self.buffer_bytes = buffer_bytes
        self.rng = random.Random(seed)
        self.counters = Counters()
        self.cut_mode: CutMode | None = None
        self.loop = asyncio.new_event_loop()
        self.link_up = asyncio.Event()  # no outage in either direction
        self.passing = {d: asyncio.Event() for d in Direction}  # bytes flow this way
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._background: set[asyncio.Task[None]] = set()

    # ---- life cycle (test thread) ----------------------------------------------------------
    def start(self) -> NetProxy:
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"netproxy-{self.port}", daemon=True)
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._thread = None
        self.loop.close()

    def __enter__(self) -> NetProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- control (test thread) -------------------------------------------------------------
    def cut(self, mode: CutMode = CutMode.BLACKHOLE, direction: Direction | None = None) -> None:
        """Start an outage. BLACKHOLE: nothing passes, nothing is closed; RESET: every connection is reset
        now and new ones are refused. A BLACKHOLE can be one-way (`direction`): the other way still
        delivers, as when only the return path is lost; new connections get no answer either way."""
        if direction is not None and mode is not CutMode.BLACKHOLE:
            raise ValueError("only a blackhole can be one-way: a reset ends the connection both ways")
        self._call(self._cut(mode, direction))

    def restore(self) -> None:
        """End the outage: queued bytes flow again; connections opened during a blackhole whose client has
        already given up are reset instead of being passed on late."""
        self._call(self._restore())

    def reset_connections(self) -> int:
        """Reset every open connection once (no outage: reconnecting works at once). Returns how many."""
        return self._call(self._reset_all())

    def set_impairment(self, *, delay_up_ms: float | None = None, delay_down_ms: float | None = None,
                       loss: float | None = None, resets_per_s: float | None = None) -> None:
        def apply() -> None:
            if delay_up_ms is not None:
                self.delay_up_ms = delay_up_ms
            if delay_down_ms is not None:
                self.delay_down_ms = delay_down_ms
            if loss is not None:
                self.loss = loss
            if resets_per_s is not None:
                self.resets_per_s = resets_per_s
        self.loop.call_soon_threadsafe(apply)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def rtt_ms(self) -> float:
        return self.delay_up_ms + self.delay_down_ms

    # ---- on the proxy's loop ---------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def delay_s(self, direction: Direction) -> float:
        return (self.delay_up_ms if direction is Direction.UP else self.delay_down_ms) / 1000

    async def _start(self) -> None:
        self._set_passing(set(Direction))
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        task = self.loop.create_task(self._random_resets())
        self._background.add(task)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _set_passing(self, directions: set[Direction]) -> None:
        for d, event in self.passing.items():
            if d in directions:
                event.set()
            else:
                event.clear()
        if len(directions) == len(Direction):
            self.link_up.set()
        else:
            self.link_up.clear()

    async def _cut(self, mode: CutMode, direction: Direction | None) -> None:
        self.cut_mode = mode
        self._set_passing(set(Direction) - {direction} if direction is not None else set())
        if mode is CutMode.RESET:
            await self._reset_all()

    async def _restore(self) -> None:
        self.cut_mode = None
        self._set_passing(set(Direction))

    async def _reset_all(self) -> int:
        conns = list(self._connections)
        for conn in conns:
            conn.reset()
        await asyncio.sleep(0.01)  # transports close their sockets (send the RSTs) on the next loop turns
        return len(conns)

    async def _random_resets(self) -> None:
        tick_s = 0.1
        while True:
            await asyncio.sleep(tick_s)
            if self.resets_per_s <= 0:
                continue
            for conn in list(self._connections):
                if self.rng.random() < self.resets_per_s * tick_s:
                    conn.reset()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_mode is CutMode.RESET:
            self.counters.connections_refused += 1
            _reset(writer)
            return
        self.counters.connections_accepted += 1
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        try:
            await conn.serve()
        finally:
            self._connections.discard(conn)
            for task in list(conn.tasks):
                task.cancel()
