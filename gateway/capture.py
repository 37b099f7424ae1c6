"""Capture: reads device bytes from serial ports and MLLP/TCP connections, decodes them and hands
the records to the outbox, which commits them before anything else sees them.

It owns device health (ok / silent / disconnected): a port that vanishes is reopened every second,
and every change of state becomes an event record for HQ. It does not know about MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol as TypingProtocol
from zoneinfo import ZoneInfo

import serial
import serial_asyncio_fast

from devices.hl7 import Hl7Decoder
from devices.masimo import MasimoDecoder
from devices.records import DecodeError, DecodeResult
from gateway.config import Protocol
from gateway.outbox import Entry, OutboxError, entry_from_record

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 4096
IDLE_FLUSH_S = 0.5
REOPEN_INTERVAL_S = 1.0


class Decoder(TypingProtocol):
    def feed(self, data: bytes, now: datetime | None = None) -> DecodeResult: ...
    def flush(self, now: datetime | None = None) -> DecodeResult: ...


def make_decoder(protocol: Protocol, device_id: str, tz: ZoneInfo, *, acks: bool = True) -> Decoder:
    if protocol is Protocol.HL7:
        return Hl7Decoder(device_id, tz, acks=acks)
    return MasimoDecoder(device_id, tz)


def wants_idle_flush(decoder: Decoder) -> bool:
    # Only bare (unframed) HL7 needs a flush to end its last message; flushing an MLLP stream
    # or a Masimo line mid-way would cut a frame that is merely slow to arrive.
    return getattr(decoder, "framing", None) == "bare"


class DeviceState:
    WAITING = "waiting"
    OK = "ok"
    SILENT = "silent"
    DISCONNECTED = "disconnected"


@dataclass(slots=True)
class DeviceHealth:
    device_id: str
    protocol: str
    source: str
    state: str = DeviceState.WAITING
    last_byte_ms: int | None = None
    bytes_total: int = 0
    records_total: int = 0
    errors_total: int = 0
    reconnects: int = 0
    store_failures: int = 0
    patient_id: str | None = None  # the patient id its latest readings carried (its own, or the configured one)


Store = Callable[[Sequence[Entry]], Awaitable[list[int]]]
StateListener = Callable[[DeviceHealth], None]
# The record number a device is linked to at check-in (gateway.local_ui.checkin), or None: while linked, its
# readings belong to that patient whatever patient id the device itself sends.
LinkedPatient = Callable[[str], str | None]


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


def state_event(health: DeviceHealth, detail: str, now_ms: int) -> Entry:
    """An event record telling HQ a device changed state (a silent device is itself an alert)."""
    return Entry(
        kind="event", metric="DEVICE_STATUS", value=None, unit=None, time_ms=now_ms, recv_ms=now_ms,
        patient_id=None, device_id=health.device_id,
        extra={"state": health.state, "source": health.source, "protocol": health.protocol, "detail": detail},
    )


class DeviceSession:
    """Decodes one device's byte stream and stores what it yields; shared by serial and TCP sources."""

    def __init__(self, health: DeviceHealth, decoder: Decoder, store: Store,
                 on_state: StateListener | None = None, patient_id: str | None = None,
                 linked_patient: LinkedPatient | None = None) -> None:
        self.health = health
        self.patient_id = patient_id
        self.linked_patient = linked_patient
        self.decoder = decoder
        self.store = store
        self.on_state = on_state
        self._error_log_budget = 20

    async def set_state(self, state: str, detail: str) -> None:
        if self.health.state == state:
            return
        self.health.state = state
        now = clock_ms()
        log.info("device %s (%s) is %s: %s", self.health.device_id, self.health.source, state, detail)
        try:
            await self.store([state_event(self.health, detail, now)])
        except OutboxError as exc:
            log.error("device %s: state event not stored: %s", self.health.device_id, exc)
        if self.on_state is not None:
            self.on_state(self.health)

    async def received(self, data: bytes) -> list[bytes]:
        """Decode and durably store; returns the replies to send back (after the commit)."""
        recv_ms = clock_ms()
        self.health.bytes_total += len(data)
        self.health.last_byte_ms = recv_ms
        if self.health.state != DeviceState.OK:
            await self.set_state(DeviceState.OK, "receiving data")
        result = self.decoder.feed(data, datetime.fromtimestamp(recv_ms / 1000, UTC))
        return await self._store_result(result, recv_ms)

    async def idle(self) -> list[bytes]:
        if not wants_idle_flush(self.decoder):
            return []
        recv_ms = clock_ms()
        return await self._store_result(self.decoder.flush(datetime.fromtimestamp(recv_ms / 1000, UTC)), recv_ms)

    async def _store_result(self, result: DecodeResult, recv_ms: int) -> list[bytes]:
        for error in result.errors:
            self._report(error)
        if result.records:
            entries = [entry_from_record(r, recv_ms, self.patient_id) for r in result.records]
            self.health.patient_id = entries[-1].patient_id
            linked = self.linked_patient(self.health.device_id) if self.linked_patient is not None else None
            if linked is not None:
                entries = [dataclasses.replace(e, patient_id=linked) for e in entries]
            try:
                await self.store(entries)
            except OutboxError as exc:
                # Disk full or failing: keep reading the device (its next frames may fit) but do not
                # acknowledge what we could not store, so a device that retries will resend it.
                self.health.store_failures += 1
                log.error("device %s: %d readings NOT stored: %s", self.health.device_id, len(result.records), exc)
                return []
            self.health.records_total += len(result.records)
        return result.replies

    def _report(self, error: DecodeError) -> None:
        self.health.errors_total += 1
        if self._error_log_budget > 0:
            self._error_log_budget -= 1
            # The reason names segment and offset; the frame excerpt may hold patient data: DEBUG only.
            log.warning("device %s: rejected frame at %s", self.health.device_id, error)
            log.debug("device %s: rejected frame bytes %r", self.health.device_id, error.frame)
        elif self._error_log_budget == 0:
            self._error_log_budget -= 1
            log.warning("device %s: more rejected frames; counting them in metrics only", self.health.device_id)


class SerialSource:
    """One serial port (or pty). Survives the port vanishing: reopens every second until it is back."""

    def __init__(self, path: str, baudrate: int, session: DeviceSession, *, silent_after_s: float,
                 send_replies: bool) -> None:
        self.path = path
        self.baudrate = baudrate
        self.session = session
        self.silent_after_s = silent_after_s
        self.send_replies = send_replies

    async def run(self) -> None:
        warned = False
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.path, baudrate=self.baudrate
                )
            except (serial.SerialException, OSError) as exc:
                if not warned:
                    await self.session.set_state(DeviceState.DISCONNECTED, f"cannot open {self.path}: {exc}")
                    warned = True
                await asyncio.sleep(REOPEN_INTERVAL_S)
                continue
            warned = False
            self.session.health.reconnects += 1
            with contextlib.suppress(Exception):
                writer.transport.serial.reset_input_buffer()  # type: ignore[attr-defined]
            try:
                await self._read_until_lost(reader, writer)
            except (serial.SerialException, OSError) as exc:
                await self.session.set_state(DeviceState.DISCONNECTED, f"{self.path}: {exc}")
            finally:
                writer.close()
            await asyncio.sleep(REOPEN_INTERVAL_S)

    async def _read_until_lost(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        last_data = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(IDLE_FLUSH_S):
                    data = await reader.read(READ_CHUNK_BYTES)
            except TimeoutError:
                await self._write(writer, await self.session.idle())
                if time.monotonic() - last_data > self.silent_after_s:
                    await self.session.set_state(
                        DeviceState.SILENT, f"no data for {self.silent_after_s:.0f} s on {self.path}"
                    )
                continue
            if not data:
                await self.session.set_state(DeviceState.DISCONNECTED, f"{self.path} closed")
                return
            last_data = time.monotonic()
            await self._write(writer, await self.session.received(data))

    async def _write(self, writer: asyncio.StreamWriter, replies: list[bytes]) -> None:
        if self.send_replies and replies:
            writer.write(b"".join(replies))
            async with asyncio.timeout(5):
                await writer.drain()


class TcpSource:
    """An MLLP listener: each connection is a device session; ACKs go back only after the commit."""

    def __init__(self, host: str, port: int, device_prefix: str, protocol: Protocol, tz: ZoneInfo,
                 store: Store, on_state: StateListener | None, registry: dict[str, DeviceHealth],
                 linked_patient: LinkedPatient | None = None) -> None:
        self.host = host
        self.port = port
        self.device_prefix = device_prefix
        self.protocol = protocol
        self.tz = tz
        self.store = store
        self.on_state = on_state
        self.registry = registry
        self.linked_patient = linked_patient
        self.bound_port: int | None = None
        self.listening = asyncio.Event()  # set once the port is bound: part of the service's readiness
        self._server: asyncio.Server | None = None

    async def run(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sock = self._server.sockets[0]
        self.bound_port = int(sock.getsockname()[1])
        log.info("listening for %s over TCP on %s:%s", self.protocol, self.host, self.bound_port)
        self.listening.set()
        async with self._server:
            await self._server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = peer[0] if peer else "unknown"
        device_id = f"{self.device_prefix}@{address}"
        health = self.registry.get(device_id)
        if health is None:
            health = DeviceHealth(device_id, str(self.protocol), f"tcp://{self.host}:{self.bound_port}")
            self.registry[device_id] = health
        session = DeviceSession(health, make_decoder(self.protocol, device_id, self.tz), self.store,
                                self.on_state, linked_patient=self.linked_patient)
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_FLUSH_S):
                        data = await reader.read(READ_CHUNK_BYTES)
                except TimeoutError:
                    replies = await session.idle()
                else:
                    if not data:
                        break
                    replies = await session.received(data)
                if replies:
                    writer.write(b"".join(replies))
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("device %s connection lost: %s", device_id, exc)
        finally:
            with contextlib.suppress(Exception):
                await session.set_state(DeviceState.DISCONNECTED, "connection closed")
            writer.close()
