"""Live updates across several HQ workers: what one worker's `LiveHub` sends to its console clients (new
readings, gateway changes, notices such as an emergency offered to an expert) goes over MQTT to the other
workers, whose hubs hand it to their own clients. Without it, an expert whose console is connected to one
worker would not hear of an emergency another worker dispatched (the shared data subscription gives each
gateway batch to one worker only).

Best effort, like the console's live channel itself: QoS 0, a bounded queue that loses the oldest when the
broker is away (counted), and a console that reconnects reloads what it shows. Messages carry their origin, so
a worker ignores its own. The topic is under `hq/`, which only HQ's identities may use (gateways are limited
to their own `clinic/<id>/` prefix by the broker's ACL): live messages hold patient data.

On only when `[console] share_live` is set (deployments with several workers).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any

from gateway.mqttlink import Message, MqttError, MqttLink
from hq.live import LiveHub

log = logging.getLogger(__name__)

TOPIC_PREFIX = "hq/live/"
SUBSCRIPTION = TOPIC_PREFIX + "+"
VERSION = 1
OPS = frozenset({"observations", "gateway", "notify"})
PUBLISH_TIMEOUT_S = 5.0


class BusError(ValueError):
    pass


def encode(origin: str, op: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, "origin": origin, "op": op, "body": body}, separators=(",", ":"),
                      default=_plain).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def decode(payload: bytes) -> tuple[str, str, dict[str, Any]]:
    """(origin, op, body); BusError says what is wrong."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BusError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise BusError(f"expected an object with v={VERSION}")
    origin, op, body = doc.get("origin"), doc.get("op"), doc.get("body")
    if not isinstance(origin, str) or op not in OPS or not isinstance(body, dict):
        raise BusError(f"expected origin (text), op (one of {sorted(OPS)}) and body (object)")
    return origin, op, body


class LiveBus:
    """Forwards the hub's messages to the other workers and delivers theirs to the hub's clients."""

    def __init__(self, hub: LiveHub, link: MqttLink, origin: str, *, max_queued: int = 1000) -> None:
        self.hub = hub
        self.link = link
        self.origin = origin
        self.topic = TOPIC_PREFIX + origin
        self._queue: collections.deque[bytes] = collections.deque(maxlen=max_queued)
        self._ready = asyncio.Event()
        self.sent = 0
        self.received = 0
        self.dropped = 0  # not sent: the queue was full (oldest first) or the broker refused
        self.rejected = 0  # received but malformed
        hub.forward = self._forward

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(SUBSCRIPTION, 0)]

    def _forward(self, op: str, body: dict[str, Any]) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(encode(self.origin, op, body))
        self._ready.set()

    def on_message(self, message: Message) -> bool:
        """Delivers another worker's live message; False when the topic is not the bus's."""
        if not message.topic.startswith(TOPIC_PREFIX):
            return False
        try:
            origin, op, body = decode(message.payload)
        except BusError as exc:
            self.rejected += 1
            log.warning("live message on %s rejected: %s", message.topic, exc)
            return True
        if origin == self.origin:
            return True
        try:
            self.hub.deliver(op, body)
        except (KeyError, TypeError, AttributeError) as exc:
            self.rejected += 1
            log.warning("live message %s from %s rejected: %r", op, origin, exc)
            return True
        self.received += 1
        return True

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            payload = self._queue.popleft()
            try:
                await self.link.publish(self.topic, payload, qos=0, timeout_s=PUBLISH_TIMEOUT_S)
                self.sent += 1
            except (MqttError, TimeoutError) as exc:
                self.dropped += 1
                log.debug("live message not shared with the other workers: %s", exc)
                await asyncio.sleep(0.5)  # not connected: do not spin; the queue keeps the newest meanwhile
