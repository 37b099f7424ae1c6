"""`LiveHub`: in-process fan-out of new observations and gateway changes to WebSocket clients.

Each client has a bounded queue: a slow client loses its oldest messages (counted), memory never grows.
It does not know about WebSockets or the database: `hq.console.websocket` drains a client into a socket.
With several HQ workers, `forward` (set by `hq.live_bus`) passes what is published here to the other workers,
which `deliver` it to their own clients.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
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
    # (clinic_id, patient_id) pairs: one HQ patient known by record numbers at several clinics
    patients: frozenset[tuple[str, str]] | None = None

    def wants(self, item: dict[str, Any]) -> bool:
        return (
            item["kind"] in self.kinds
            and (self.patient_id is None or item["patient_id"] == self.patient_id)
            and (self.clinic_id is None or item["clinic_id"] == self.clinic_id)
            and (self.patients is None or (item["clinic_id"], item["patient_id"]) in self.patients)
        )


@dataclass(frozen=True, slots=True)
class Audience:
    """Whom a client may receive data for: its user, role and (clinic staff) clinic."""

    user_id: int | None = None
    role: str | None = None
    clinic_id: str | None = None  # None: every clinic
    observations: bool = True  # experts receive vitals only through their consultations' pages


class LiveClient:
    def __init__(self, max_queued: int, audience: Audience | None = None) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be >= 1")
        self.audience = audience or Audience()
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
        self.forward: Callable[[str, dict[str, Any]], None] | None = None  # (op, body) to the other workers

    def connect(self, audience: Audience | None = None) -> LiveClient:
        client = LiveClient(self.max_queued_per_client, audience)
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
        """Whether anyone may want a message: a client here, or other workers."""
        return bool(self._clients) or self.forward is not None

    def deliver(self, op: str, body: dict[str, Any]) -> None:
        """Another worker's message (`hq.live_bus`), to this worker's clients only."""
        if op == "observations":
            self._observations(list(body.get("items") or ()))
        elif op == "gateway":
            self._gateway(body["gateway"])
        elif op == "notify":
            self._notify(body["message"], body.get("user_ids"), body.get("roles"), body.get("clinic_id"))

    def publish_observations(self, items: Iterable[dict[str, Any]]) -> None:
        items = list(items)
        if not items:
            return
        if self.forward is not None:
            self.forward("observations", {"items": items})
        self._observations(items)

    def _observations(self, items: list[dict[str, Any]]) -> None:
        self.published += 1
        for client in self._clients:
            audience = client.audience
            if not audience.observations:
                continue
            wanted = [i for i in items if client.subscription.wants(i)
                      and (audience.clinic_id is None or i["clinic_id"] == audience.clinic_id)]
            if wanted:
                client.offer({"type": "observations", "items": wanted})

    def publish_gateway(self, gateway: dict[str, Any]) -> None:
        if self.forward is not None:
            self.forward("gateway", {"gateway": gateway})
        self._gateway(gateway)

    def _gateway(self, gateway: dict[str, Any]) -> None:
        self.published += 1
        for client in self._clients:
            if client.audience.observations and client.audience.clinic_id in (None, gateway["clinic_id"]):
                client.offer({"type": "gateway", "gateway": gateway})

    def notify(self, message: dict[str, Any], *, user_ids: Iterable[int] | None = None,
               roles: Iterable[str] | None = None, clinic_id: str | None = None) -> int:
        """A domain event (a dispatch to experts, a booking change) to the clients it concerns: those of
        `user_ids`, or with one of `roles` (admins too), limited to `clinic_id`'s staff and the chain-wide
        roles when given. Returns how many clients of this worker got it."""
        users = None if user_ids is None else list(user_ids)
        roles = None if roles is None else list(roles)
        if self.forward is not None:
            self.forward("notify", {"message": message, "user_ids": users, "roles": roles, "clinic_id": clinic_id})
        return self._notify(message, users, roles, clinic_id)

    def _notify(self, message: dict[str, Any], user_ids: Iterable[int] | None, roles: Iterable[str] | None,
                clinic_id: str | None) -> int:
        users = None if user_ids is None else set(user_ids)
        role_set = None if roles is None else {*roles, "admin"}
        sent = 0
        for client in self._clients:
            a = client.audience
            if users is not None and a.user_id not in users:
                continue
            if role_set is not None and a.role not in role_set:
                continue
            if clinic_id is not None and a.clinic_id not in (None, clinic_id):
                continue
            client.offer(message)
            sent += 1
        if sent:
            self.published += 1
        return sent

    def disconnect_user(self, user_id: int) -> list[LiveClient]:
        """The clients of a deactivated user: the caller closes their sockets."""
        return [c for c in self._clients if c.audience.user_id == user_id]
