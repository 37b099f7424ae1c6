"""The simulator over real transports: a pty pair and a local TCP MLLP receiver that ACKs."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
import tty
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from devices.hl7 import Hl7Decoder
from devices.masimo import MasimoDecoder
from devices.records import DecodeResult, Kind


def _read_pty(master: int, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data += os.read(master, 65536)
            except OSError:
                break
        elif proc.poll() is not None:
            break
    return data


def _simulate(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "devices", "simulate", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _pty() -> tuple[int, int, str]:
    """(master, slave, slave path); the slave stays open here so the pty survives the child's close."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def test_hl7_over_a_pty_decodes_to_plausible_vitals() -> None:
    master, slave, name = _pty()
    started = datetime.now(UTC)
    proc = _simulate(
        "--protocol", "hl7", "--port", name, "--rate", "20", "--count", "10", "--alarm-every", "0.2", "--seed", "4"
    )
    try:
        data = _read_pty(master, proc)
        assert proc.wait(10) == 0, proc.stderr.read() if proc.stderr else b""
    finally:
        os.close(master)
        os.close(slave)
    decoder = Hl7Decoder("pty", ZoneInfo("UTC"))
    result = decoder.feed(data)
    result.extend(decoder.flush())
    assert result.errors == []
    spo2 = [r for r in result.records if r.metric == "MDC_PULS_OXIM_SAT_O2" and r.kind is Kind.OBSERVATION]
    assert len(spo2) >= 8
    assert all(60 <= (r.value or 0) <= 100 for r in spo2)
    assert all(started - timedelta(seconds=1) <= r.time <= datetime.now(UTC) for r in spo2)
    assert {r.patient_id for r in result.records} == {"SIM-0001"}
    assert decoder.framing == "mllp"


def test_masimo_over_a_pty() -> None:
    master, slave, name = _pty()
    proc = _simulate("--protocol", "masimo", "--port", name, "--rate", "20", "--count", "5", "--masimo-variant", "rad8")
    try:
        data = _read_pty(master, proc)
        assert proc.wait(10) == 0
    finally:
        os.close(master)
        os.close(slave)
    decoder = MasimoDecoder("pty", ZoneInfo("UTC"))
    result = decoder.feed(data, datetime.now(UTC))
    assert result.errors == []
    assert len([r for r in result.records if r.metric == "MDC_PULS_OXIM_SAT_O2"]) == 5


def test_hl7_over_tcp_to_an_acking_mllp_receiver() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = DecodeResult()
    acks_sent = []

    def serve() -> None:
        conn, _ = server.accept()
        decoder = Hl7Decoder("tcp", ZoneInfo("UTC"))
        with conn:
            while chunk := conn.recv(65536):
                result = decoder.feed(chunk)
                received.extend(result)
                for reply in result.replies:
                    conn.sendall(reply)
                    acks_sent.append(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    proc = _simulate("--protocol", "hl7", "--port", f"tcp://127.0.0.1:{port}", "--rate", "50", "--count", "6")
    assert proc.wait(20) == 0
    thread.join(5)
    server.close()
    assert received.errors == []
    assert len(acks_sent) >= 6
    assert len([r for r in received.records if r.metric == "MDC_ECG_HEART_RATE"]) >= 6
    assert b"unexpected reply" not in (proc.stderr.read() if proc.stderr else b"")


def test_simulator_waits_for_a_missing_port_and_stops_on_sigterm(tmp_path: object) -> None:
    proc = _simulate("--protocol", "masimo", "--port", "/dev/does-not-exist-sim", "--rate", "5")
    time.sleep(1.5)
    proc.terminate()
    assert proc.wait(10) == 0
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert err.count("cannot open /dev/does-not-exist-sim") == 1
