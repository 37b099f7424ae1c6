"""Drives a simulated monitor onto a serial port (or pty) or a TCP MLLP receiver, in real time.

The I/O edge of the simulators: the patient model and the encoders stay pure.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from zoneinfo import ZoneInfo

import serial

from devices.hl7_encoder import encode_oru_r01, encode_oru_r40
from devices.masimo import ALARM_ACTIVE_BIT, MasimoVariant, encode_line
from devices.mllp import Frame, MllpFramer, frame
from devices.records import Kind, Record
from devices.simulators.patient import Patient

log = logging.getLogger(__name__)

_LINE_ENDS = {"cr": "\r", "lf": "\n", "crlf": "\r\n"}


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    protocol: str  # "hl7" or "masimo"
    port: str  # serial device path, or tcp://HOST:PORT
    rate: float = 1.0  # messages per second
    count: int | None = None
    seed: int = 1
    patient_id: str | None = "SIM-0001"
    device_id: str = "sim"
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    alarm_every_s: float | None = None
    framing: str = "mllp"  # hl7 on serial: mllp, cr, lf, crlf
    masimo_variant: MasimoVariant = MasimoVariant.RADICAL7
    baudrate: int = 9600


class _Stop:
    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


class SerialSink:
    """Writes to a serial port, reopening it every second while it is missing."""

    def __init__(self, path: str, baudrate: int, stop: threading.Event) -> None:
        self.path = path
        self.baudrate = baudrate
        self.stop = stop
        self._port: serial.Serial | None = None
        self._down_logged = False

    def _open(self) -> bool:
        try:
            self._port = serial.Serial(self.path, self.baudrate, write_timeout=2)
        except (serial.SerialException, OSError) as exc:
            if not self._down_logged:
                log.warning("cannot open %s (%s); retrying every second", self.path, exc)
                self._down_logged = True
            return False
        if self._down_logged:
            log.info("opened %s", self.path)
        self._down_logged = False
        return True

    def send(self, data: bytes) -> bool:
        """Write `data`; False if the port is unavailable (the data is dropped, as a monitor would)."""
        while self._port is None and not self.stop.is_set():
            if self._open():
                break
            self.stop.wait(1.0)
        if self._port is None:
            return False
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            log.warning("write to %s failed (%s); reopening", self.path, exc)
            self._down_logged = True
            self.close()
            return False
        return True

    def drain(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
            self._port = None


class TcpMllpSink:
    """Sends MLLP frames to an HL7 receiver, reads and checks its ACKs, reconnects with backoff."""

    def __init__(self, host: str, port: int, stop: threading.Event, seed: int) -> None:
        self.host = host
        self.port = port
        self.stop = stop
        self._sock: socket.socket | None = None
        self._framer = MllpFramer()
        self._backoff_s = 0.5
        self._jitter = random.Random(seed)
        self.acks = 0
        self.naks = 0
        self.sent = 0

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
        except OSError as exc:
            log.warning("connect to %s:%d failed (%s); retrying in %.1f s", self.host, self.port, exc, self._backoff_s)
            self.stop.wait(self._backoff_s * (0.5 + self._jitter.random()))
            self._backoff_s = min(self._backoff_s * 2, 10.0)
            return False
        sock.settimeout(0)
        self._sock = sock
        self._framer = MllpFramer()
        self._backoff_s = 0.5
        log.info("connected to %s:%d", self.host, self.port)
        return True

    def send(self, payload: bytes) -> bool:
        while self._sock is None and not self.stop.is_set():
            self._connect()
        if self._sock is None:
            return False
        try:
            self._sock.settimeout(5)
            self._sock.sendall(frame(payload))
            self._sock.settimeout(0)
        except OSError as exc:
            log.warning("send to %s:%d failed (%s); reconnecting", self.host, self.port, exc)
            self.close()
            return False
        self.sent += 1
        self._read_acks()
        return True

    def _read_acks(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, TimeoutError):
                return
            except OSError as exc:
                log.warning("receive from %s:%d failed (%s)", self.host, self.port, exc)
                self.close()
                return
            if not data:
                log.warning("%s:%d closed the connection", self.host, self.port)
                self.close()
                return
            for item in self._framer.feed(data):
                if isinstance(item, Frame) and b"MSA|AA" in item.payload:
                    self.acks += 1
                else:
                    self.naks += 1
                    log.warning("unexpected reply from %s:%d: %r", self.host, self.port, item)

    def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for ACKs of everything sent."""
        deadline = time.monotonic() + timeout_s
        while self._sock is not None and self.acks + self.naks < self.sent and time.monotonic() < deadline:
            self._read_acks()
            time.sleep(0.01)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Simulator:
    """Steps a patient at `rate` and sends each step as one message (or line)."""

    def __init__(self, config: SimulatorConfig, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.patient = Patient(
            config.seed, config.patient_id, device_id=config.device_id, alarm_every_s=config.alarm_every_s
        )
        self._control = 0
        if config.port.startswith("tcp://"):
            host, _, port = config.port[len("tcp://") :].rpartition(":")
            self.sink: SerialSink | TcpMllpSink = TcpMllpSink(host.strip("[]"), int(port), self.stop, config.seed)
        else:
            self.sink = SerialSink(config.port, config.baudrate, self.stop)

    def messages(self, records: list[Record]) -> list[bytes]:
        """The payloads one step produces (ORU^R01 plus an ORU^R40 if alarms changed, or a line)."""
        c = self.config
        if c.protocol == "masimo":
            values = {r.metric: r.value for r in records if r.kind is Kind.OBSERVATION}
            low, high = self.patient.alarms_active
            word = (0x0002 if low else 0) | (0x0004 if high else 0)
            word |= ALARM_ACTIVE_BIT if word else 0
            return [
                encode_line(
                    records[0].time,
                    c.tz,
                    spo2=values.get("MDC_PULS_OXIM_SAT_O2"),
                    bpm=values.get("MDC_PULS_OXIM_PULS_RATE"),
                    pi=values.get("MDC_PULS_OXIM_PERF_REL"),
                    alarm=word,
                    variant=c.masimo_variant,
                )
            ]
        end = _LINE_ENDS.get(c.framing, "\r")
        observations = [r for r in records if r.kind is not Kind.ALARM]
        alarms = [r for r in records if r.kind is Kind.ALARM]
        out = []
        self._control += 1
        out.append(
            encode_oru_r01(
                observations,
                control_id=f"{c.device_id}-{self._control}",
                sending_app=c.device_id,
                segment_end=end,
            )
        )
        if alarms:
            self._control += 1
            out.append(
                encode_oru_r40(
                    alarms,
                    control_id=f"{c.device_id}-{self._control}",
                    sending_app=c.device_id,
                    segment_end=end,
                )
            )
        return out

    def _wire(self, payload: bytes) -> bytes:
        c = self.config
        if c.protocol == "hl7" and isinstance(self.sink, SerialSink):
            return frame(payload) if c.framing == "mllp" else payload
        return payload

    def run(self) -> int:
        c = self.config
        period_s = 1.0 / c.rate
        sent = 0
        next_at = time.monotonic()
        last = datetime.min.replace(tzinfo=UTC)
        try:
            while not self.stop.is_set() and (c.count is None or sent < c.count):
                # OBX-14 must be the wall-clock time of encoding: latency benchmarks compare it. After a
                # stall two steps can fall in one millisecond: a real device's clock still moves on.
                last = max(datetime.now(UTC), last + timedelta(milliseconds=1))
                records = self.patient.step(last)
                for payload in self.messages(records):
                    if self.sink.send(self._wire(payload)):
                        sent += 1
                next_at += period_s
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                else:
                    next_at = time.monotonic()
            self.sink.drain(2.0)
        finally:
            self.sink.close()
        log.info("sent %d messages", sent)
        return 0


def run(config: SimulatorConfig) -> int:
    """Run until `count` messages are sent or SIGINT/SIGTERM arrives."""
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return Simulator(config, stop.event).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
