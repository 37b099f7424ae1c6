"""The one MQTT connection wrapper: paho-mqtt (MQTT v5) driven from the asyncio event loop.

It owns the reconnect loop (exponential backoff with jitter), resubscribes on every connect,
bounds paho's queue and turns PUBACK reason codes into awaitable results. It does not know
what messages mean: that is `gateway.wire` (the contract) and the uplink / HQ ingest (the use).
HQ imports this module too: it is the transport half of the wire contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


class MqttError(Exception):
    """Root of this module's errors."""


class NotConnected(MqttError):
    """The link is down; the caller keeps its data and tries again after reconnect."""


class PublishRefused(MqttError):
    """The broker answered a publish with a failure reason code (e.g. 135, not authorised)."""

    def __init__(self, topic: str, reason: ReasonCode) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"broker refused publish to {topic!r}: {reason} ({reason.value})")


class PublishTimeout(MqttError):
    """No PUBACK within the caller's deadline; the connection may be wedged."""


class QueueFull(MqttError):
    """paho's bounded queue is full: the caller must wait (backpressure)."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 24 * 3600
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 5.0
    max_inflight: int = 64
    max_queued: int = 1000
    username: str | None = None
    password: str | None = None
    tls: TlsSettings | None = None


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class BrokerSection:
    """The [mqtt] table of both services' configuration: where the broker is and how to log in."""

    host: str = field(default="127.0.0.1", metadata=_doc("MQTT broker host."))
    port: int = field(default=1883, metadata=_doc("MQTT broker port (8883 for TLS)."))
    keepalive_s: int = field(default=30, metadata=_doc(
        "MQTT keep-alive; the broker publishes the last will after 1.5x this without traffic."))
    username: str | None = field(default=None, metadata=_doc("Broker user name, if the broker wants one."))
    password_file: Path | None = field(default=None, metadata=_doc(
        "File holding the broker password (secrets never go on the command line or in this file)."))
    ca_file: Path | None = field(default=None, metadata=_doc("CA bundle to verify the broker (enables TLS)."))
    cert_file: Path | None = field(default=None, metadata=_doc("Client certificate (mutual TLS)."))
    key_file: Path | None = field(default=None, metadata=_doc("Private key of the client certificate."))

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} must be 1-65535")
        if not 5 <= self.keepalive_s <= 3600:
            raise ValueError(f"keepalive_s {self.keepalive_s} must be 5-3600")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be set together")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("cert_file needs ca_file (TLS)")

    def secret_files(self) -> list[Path]:
        return [p for p in (self.password_file, self.ca_file, self.cert_file, self.key_file) if p is not None]

    def link_settings(self, client_id: str) -> LinkSettings:
        """Reads the password file; raises OSError if it cannot (check `secret_files()` at start)."""
        password = self.password_file.read_text(encoding="utf-8").strip() if self.password_file else None
        tls = None
        if self.ca_file is not None:
            tls = TlsSettings(str(self.ca_file), str(self.cert_file) if self.cert_file else None,
                              str(self.key_file) if self.key_file else None)
        return LinkSettings(host=self.host, port=self.port, client_id=client_id, keepalive_s=self.keepalive_s,
                            username=self.username, password=password, tls=tls)


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    properties: dict[str, Any] = field(default_factory=dict)


MessageHandler = Callable[[Message], None]
ConnectHandler = Callable[[], None]


def backoff_delays(initial_s: float, max_s: float, rng: random.Random) -> Any:
    """Exponential backoff with full jitter on top of a floor, so a fleet does not reconnect in lockstep."""
    delay = initial_s
    while True:
        yield delay / 2 + rng.uniform(0, delay / 2)
        delay = min(max_s, delay * 2)


class MqttLink:
    """A long-lived MQTT v5 session. `run()` keeps it connected until cancelled.

    Each connection attempt uses a fresh paho client, so nothing paho queued for a dead
    connection is replayed behind our back: callers (the outbox) own redelivery. The broker-side
    session persists (clean_start=False, session expiry) so downlink QoS 1 messages queued while
    we were away still arrive.
    """

    def __init__(
        self,
        settings: LinkSettings,
        *,
        subscriptions: list[tuple[str, int]] | None = None,
        on_message: MessageHandler | None = None,
        on_connect: ConnectHandler | None = None,
        on_disconnect: ConnectHandler | None = None,
        will: Will | None = None,
    ) -> None:
        self.settings = settings
        self._subscriptions = list(subscriptions or [])
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._will = will
        self._client: paho.Client | None = None
        self._pending: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self._connected = asyncio.Event()
        self._lost: asyncio.Event = asyncio.Event()
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._subacks: dict[int, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()
        self._closing = False
        self._failures = 0
        self.connects = 0
        self.disconnects = 0

    # ---- public API -------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        async with asyncio.timeout(timeout_s):
            await self._connected.wait()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
        properties: dict[str, Any] | None = None, timeout_s: float = 30.0,
    ) -> None:
        """Publish and, for QoS 1, wait for the PUBACK.

        Raises NotConnected, QueueFull, PublishRefused, or PublishTimeout (no PUBACK within `timeout_s`).
        """
        client = self._client
        if client is None or not self._connected.is_set():
            raise NotConnected(f"not connected to {self.settings.host}:{self.settings.port}")
        props = _publish_properties(properties) if properties else None
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise QueueFull(f"MQTT client queue full ({self.settings.max_queued} messages)")
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise NotConnected("connection lost while publishing")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pending[info.mid] = (topic, fut)
        try:
            async with asyncio.timeout(timeout_s):
                await fut
        except TimeoutError:
            self._pending.pop(info.mid, None)
            raise PublishTimeout(f"no PUBACK for {topic!r} within {timeout_s} s") from None

    def set_handlers(
        self,
        *,
        subscriptions: list[tuple[str, int]],
        on_message: MessageHandler | None = None,
        on_connect: ConnectHandler | None = None,
        on_disconnect: ConnectHandler | None = None,
    ) -> None:
        """Attach the link's user after construction (the user usually needs the link itself)."""
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect

    def add_subscription(self, topic: str, qos: int = 1) -> None:
        self._subscriptions.append((topic, qos))
        if self._client is not None and self._connected.is_set():
            self._client.subscribe(topic, qos=qos)

    async def close(self, final: list[tuple[str, bytes, bool]] | None = None, timeout_s: float = 2.0) -> None:
        """Publish `final` messages (topic, payload, retain), then disconnect cleanly."""
        self._closing = True
        client = self._client
        if client is not None and self._connected.is_set():
            for topic, payload, retain in final or []:
                with contextlib.suppress(MqttError, TimeoutError):
                    await asyncio.wait_for(self.publish(topic, payload, retain=retain), timeout_s)
            client.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout_s)

    async def run(self) -> None:
        """Connect, stay connected, reconnect with backoff; returns only when cancelled or closed."""
        self._loop = asyncio.get_running_loop()
        delays = backoff_delays(self.settings.backoff_initial_s, self.settings.backoff_max_s, self._rng)
        try:
            while not self._closing:
                if await self._connect_once():
                    delays = backoff_delays(
                        self.settings.backoff_initial_s, self.settings.backoff_max_s, self._rng
                    )
                    await self._serve_connection()
                if self._closing:
                    break
                await asyncio.sleep(next(delays))
        finally:
            self._teardown()

    # ---- connection lifecycle ---------------------------------------------------------
    def _new_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        client.max_inflight_messages_set(s.max_inflight)
        client.max_queued_messages_set(s.max_queued)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.tls.ca_file)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if s.tls.cert_file:
                ctx.load_cert_chain(s.tls.cert_file, s.tls.key_file)
            client.tls_set_context(ctx)
        if self._will is not None:
            client.will_set(self._will.topic, self._will.payload, qos=self._will.qos, retain=self._will.retain)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_subscribe = self._handle_subscribe
        client.on_message = self._handle_message
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._socket_register_write
        client.on_socket_unregister_write = self._socket_unregister_write
        return client

    async def _connect_once(self) -> bool:
        assert self._loop is not None
        s = self.settings
        client = self._new_client()
        self._client = client
        self._lost = asyncio.Event()
        self._connack = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.session_expiry_s
        try:
            # paho's connect() does a blocking TCP (and TLS) handshake: keep it off the loop.
            async with asyncio.timeout(s.connect_timeout_s):
                await self._loop.run_in_executor(
                    None,
                    lambda: client.connect(
                        s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props
                    ),
                )
                reason = await self._wait_connack()
        except (OSError, TimeoutError, ssl.SSLError, socket.gaierror) as exc:
            self._connect_failed(f"connect to {s.host}:{s.port} failed: {exc or type(exc).__name__}")
            return False
        if reason.is_failure:
            self._connect_failed(f"broker {s.host}:{s.port} refused the connection: {reason}")
            return False
        self._failures = 0
        return True

    async def _wait_connack(self) -> ReasonCode:
        """The broker's CONNACK, or ConnectionError as soon as the connection drops before it: a reset just
        after the TCP handshake (a proxy or load balancer with no broker behind it) must not cost the whole
        connect timeout before the next attempt."""
        assert self._connack is not None
        lost: asyncio.Future[Any] = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait([self._connack, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if self._connack.done():
            return self._connack.result()
        raise ConnectionError("connection closed before the broker's CONNACK")

    def _connect_failed(self, why: str) -> None:
        self._drop_client()
        self._failures += 1
        # A broker away for hours must not flood the journal: the first failure, then one line a minute.
        if self._failures == 1 or self._failures % max(1, int(60 / self.settings.backoff_max_s)) == 0:
            log.warning("mqtt %s (attempt %d; retrying every %.0f s at most)", why, self._failures,
                        self.settings.backoff_max_s)
        else:
            log.debug("mqtt %s", why)

    async def _serve_connection(self) -> None:
        client = self._client
        assert client is not None
        self.connects += 1
        await self._subscribe_all(client)
        if self._lost.is_set():
            self._drop_client()
            return
        self._connected.set()
        log.info("mqtt connected to %s:%s as %s", self.settings.host, self.settings.port, self.settings.client_id)
        if self._on_connect is not None:
            self._on_connect()
        try:
            while not self._lost.is_set():
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._lost.wait()
                if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS and not self._lost.is_set():
                    self._lost.set()
        finally:
            self._connected.clear()
            self.disconnects += 1
            self._fail_pending(NotConnected("connection lost before the broker acknowledged"))
            self._drop_client()
            if self._on_disconnect is not None:
                self._on_disconnect()

    async def _subscribe_all(self, client: paho.Client) -> None:
        """Subscribe and wait for the SUBACKs, so "connected" means "receiving" (a message published
        between our CONNECT and the broker processing our SUBSCRIBE would otherwise be missed)."""
        assert self._loop is not None
        waits: list[asyncio.Future[None]] = []
        for topic, qos in self._subscriptions:
            rc, mid = client.subscribe(topic, qos=qos)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                fut: asyncio.Future[None] = self._loop.create_future()
                self._subacks[mid] = fut
                waits.append(fut)
        if not waits:
            return
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                await asyncio.gather(*waits)
        except TimeoutError:
            log.warning("mqtt broker did not acknowledge subscriptions within %s s", self.settings.connect_timeout_s)
        finally:
            self._subacks.clear()

    def _handle_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        fut = self._subacks.pop(mid, None)
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("mqtt broker refused a subscription: %s", ", ".join(str(r) for r in failed))
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _drop_client(self) -> None:
        client = self._client
        self._client = None
        if client is None:
            return
        sock = client.socket()
        if sock is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
        with contextlib.suppress(Exception):
            client.disconnect()
        with contextlib.suppress(Exception):
            if sock is not None:
                sock.close()

    def _teardown(self) -> None:
        self._connected.clear()
        self._fail_pending(NotConnected("link closed"))
        self._drop_client()

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for _topic, fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)

    # ---- paho callbacks (run on the event loop, except socket_open during connect) ----
    def _socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.add_reader, sock, self._read_ready, client)

    def _read_ready(self, client: paho.Client) -> None:
        if client is self._client:
            client.loop_read()

    def _socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._remove_socket, sock)
        if client is self._client:
            self._loop.call_soon_threadsafe(self._lost.set)

    def _remove_socket(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)

    def _socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._loop.add_writer, sock, self._write_ready, client)

    def _write_ready(self, client: paho.Client) -> None:
        if client is self._client:
            client.loop_write()

    def _socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._remove_writer, sock)

    def _remove_writer(self, sock: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)

    def _handle_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)

    def _handle_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if client is self._client:
            if not self._closing:
                log.warning("mqtt disconnected from %s:%s: %s", self.settings.host, self.settings.port, reason)
            self._lost.set()

    def _handle_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        entry = self._pending.pop(mid, None)
        if entry is None or entry[1].done():
            return
        topic, fut = entry
        if reason.is_failure:
            fut.set_exception(PublishRefused(topic, reason))
        else:
            fut.set_result(None)

    def _handle_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        props: dict[str, Any] = {}
        if msg.properties is not None:
            props = msg.properties.json()  # type: ignore[no-untyped-call]
        try:
            self._on_message(Message(msg.topic, bytes(msg.payload), bool(msg.retain), props))
        except Exception:
            log.exception("mqtt message handler failed for topic %s", msg.topic)


def _publish_properties(values: dict[str, Any]) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props
