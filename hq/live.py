"""`LiveHub`: in-process fan-out of new observations and gateway changes to WebSocket clients.

Each client has a bounded queue: a slow client loses its oldest messages (counted), memory never grows.
It does not know about WebSockets or the database: `hq.console.websocket` drains a client into a socket.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Waveforms are heavy and the console does not draw them; a client asks for them explicitly.
DEFAULT_KINDS = frozenset({"observation", "alarm", "gap", "event"})


@dataclass(frozen=True, slots=True)
class Subscription:
    """Which observations a client wants; None means any. Gateway changes go to every client."""

    patient_id: str | None = None
    clinic_id: str | None = None
    kinds: frozenset[str] = field(default=DEFAULT_KINDS)

    def wants(self, item: dict[str, Any]) -> bool:
        return (
            item["kind"] in self.kinds
            and (self.patient_id is None or item["patient_id"] == self.patient_id)
            and (self.clinic_id is None or item["clinic_id"] == self.clinic_id)
        )


class LiveClient:
    def __init__(self, max_queued: int) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be >= 1")
        self.subscription = Subscription()
        self.dropped = 0
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_queued)
        self._ready = asyncio.Event()

    def offer(self, message: dict[str, Any]) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque(maxlen) discards the oldest on append
        self._queue.append(message)
        self._ready.set()

    def pending(self) -> int:
        return len(self._queue)

    async def next(self) -> dict[str, Any]:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()


class LiveHub:
    def __init__(self, max_queued_per_client: int = 256) -> None:
        self.max_queued_per_client = max_queued_per_client
        self._clients: set[LiveClient] = set()
        self._dropped_gone = 0  # drops of clients that have since disconnected
        self.published = 0

    def connect(self) -> LiveClient:
        client = LiveClient(self.max_queued_per_client)
        self._clients.add(client)
        return client

    def disconnect(self, client: LiveClient) -> None:
        if client in self._clients:
            self._clients.remove(client)
            self._dropped_gone += client.dropped

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def dropped(self) -> int:
        return self._dropped_gone + sum(c.dropped for c in self._clients)

    @property
    def has_clients(self) -> bool:
        return bool(self._clients)

    def publish_observations(self, items: Iterable[dict[str, Any]]) -> None:
        items = list(items)
        if not items:
            return
        self.published += 1
        for client in self._clients:
            wanted = [i for i in items if client.subscription.wants(i)]
            if wanted:
                client.offer({"type": "observations", "items": wanted})

    def publish_gateway(self, gateway: dict[str, Any]) -> None:
        self.published += 1
        for client in self._clients:
            client.offer({"type": "gateway", "gateway": gateway})
