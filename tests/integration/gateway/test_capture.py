"""Capture against real pseudo-terminals (socat) and real TCP sockets, storing into a real outbox."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from devices.hl7_encoder import encode_oru_r01
from devices.masimo import encode_line
from devices.mllp import frame
from devices.records import Kind, Record
from gateway.capture import DeviceHealth, DeviceSession, SerialSource, TcpSource, make_decoder
from gateway.config import Protocol
from gateway.outbox import Outbox
from gateway.wire import Lane

UTC_ZONE = ZoneInfo("UTC")


class PtyPair:
    def __init__(self, directory: Path) -> None:
        self.gateway_side = directory / "tty-gw"
        self.device_side = directory / "tty-dev"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={self.gateway_side}",
                                      f"pty,raw,echo=0,link={self.device_side}"])
        deadline = time.monotonic() + 5
        while not (self.gateway_side.exists() and self.device_side.exists()):
            assert time.monotonic() < deadline, "socat did not create the pty pair"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None

    def write(self, data: bytes) -> None:
        fd = os.open(self.device_side, os.O_WRONLY | os.O_NOCTTY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path)
    pair.start()
    yield pair
    pair.stop()


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    ob = Outbox(tmp_path / "outbox.db", "gw-test")
    await ob.open()
    yield ob
    await ob.close()


async def eventually(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def masimo_line(spo2: int, second: int) -> bytes:
    when = datetime(2026, 11, 21, 8, 0, second, tzinfo=UTC)
    return encode_line(when, UTC_ZONE, spo2=spo2, bpm=70, pi=3.5)


async def test_serial_port_that_vanishes_and_returns_resumes_by_itself(pty: PtyPair, outbox: Outbox) -> None:
    health = DeviceHealth("oxi-1", "masimo", str(pty.gateway_side))
    states: list[str] = []
    session = DeviceSession(health, make_decoder(Protocol.MASIMO, "oxi-1", UTC_ZONE), outbox.append,
                            lambda h: states.append(h.state), patient_id="P-1")
    source = SerialSource(str(pty.gateway_side), 9600, session, silent_after_s=30, send_replies=False)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.sleep(0.5)  # the gateway opens the port before the device writes
        pty.write(masimo_line(97, 1) + masimo_line(96, 2))
        await eventually(lambda: outbox.count(Lane.VITALS) == 6)
        # The cable is pulled: the pty pair disappears.
        pty.stop()
        await eventually(lambda: health.state == "disconnected")
        # ... and plugged back in: the gateway reopens the port within a second or two.
        pty.start()
        await eventually(lambda: health.reconnects >= 2, timeout_s=10)
        await asyncio.sleep(0.3)
        pty.write(masimo_line(95, 3))
        await eventually(lambda: outbox.count(Lane.VITALS) == 9)
        assert states == ["ok", "disconnected", "ok"]
        vitals = await outbox.read_lane(Lane.VITALS, 0, 100)
        assert {r.patient_id for r in vitals} == {"P-1"}
        assert [r.value for r in vitals if r.metric == "MDC_PULS_OXIM_SAT_O2"] == [97.0, 96.0, 95.0]
        events = await outbox.read_lane(Lane.ALARM, 0, 100)
        assert [e.extra["state"] for e in events if e.kind == "event"] == ["ok", "disconnected", "ok"]
    finally:
        task.cancel()


async def test_silent_device_is_reported(pty: PtyPair, outbox: Outbox) -> None:
    health = DeviceHealth("oxi-1", "masimo", str(pty.gateway_side))
    session = DeviceSession(health, make_decoder(Protocol.MASIMO, "oxi-1", UTC_ZONE), outbox.append)
    source = SerialSource(str(pty.gateway_side), 9600, session, silent_after_s=1.0, send_replies=False)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.sleep(0.5)
        pty.write(masimo_line(97, 1))
        await eventually(lambda: health.state == "ok")
        await eventually(lambda: health.state == "silent", timeout_s=5)
        await eventually(lambda: outbox.count(Lane.ALARM) == 2)
        events = await outbox.read_lane(Lane.ALARM, 0, 100)
        assert [e.extra["state"] for e in events if e.extra] == ["ok", "silent"]
    finally:
        task.cancel()


def oru(control_id: str, spo2: float) -> bytes:
    when = datetime.now(UTC)
    records = [Record(Kind.OBSERVATION, "MDC_PULS_OXIM_SAT_O2", spo2, "%", when, "P-9", "mon"),
               Record(Kind.OBSERVATION, "MDC_PULS_OXIM_PULS_RATE", 71.0, "/min", when, "P-9", "mon")]
    return frame(encode_oru_r01(records, control_id=control_id))


async def test_mllp_acks_only_after_the_outbox_commit_and_survives_split_frames(outbox: Outbox) -> None:
    registry: dict[str, DeviceHealth] = {}
    source = TcpSource("127.0.0.1", 0, "lan", Protocol.HL7, UTC_ZONE, outbox.append, None, registry)
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: source.bound_port is not None)
        reader, writer = await asyncio.open_connection("127.0.0.1", source.bound_port)
        message = oru("MSG-1", 97)
        # Garbage, then the message split in three reads.
        for part in (b"\x00noise\r\n", message[:10], message[10:50], message[50:]):
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 5)
        assert b"MSA|AA|MSG-1" in ack
        assert outbox.count(Lane.VITALS) == 2  # committed before the ACK went out
        rows = await outbox.read_lane(Lane.VITALS, 0, 10)
        assert rows[0].device_id == "lan@127.0.0.1" and rows[0].patient_id == "P-9"
        writer.close()
        await eventually(lambda: registry["lan@127.0.0.1"].state == "disconnected")
    finally:
        task.cancel()
