"""`python -m devices decode` as a subprocess: JSON lines out, errors on stderr, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parents[2] / "data" / "devices"


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "devices", *args], input=stdin, capture_output=True, timeout=60)


def test_decode_hl7_file_prints_json_lines() -> None:
    p = run(
        "decode", "--protocol", "hl7", "--tz", "Europe/Berlin", "--device-id", "bed-9", str(DATA / "pcd01_mllp.hl7")
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 11
    first = json.loads(lines[0])
    assert first == {
        "kind": "observation",
        "metric": "MDC_PULS_OXIM_SAT_O2",
        "value": 97.0,
        "unit": "%",
        "time": "2026-11-21T13:30:55.000Z",
        "patient_id": "MRN-4711",
        "device_id": "bed-9",
    }
    assert b", " not in p.stdout  # compact
    assert p.stderr == b""


def test_decode_reports_errors_on_stderr_with_file_name(tmp_path: Path) -> None:
    capture = tmp_path / "input.hl7"
    good = (DATA / "pcd04_alarm_cr.hl7").read_bytes()
    capture.write_bytes(good + good.replace(b"|85|", b"|abc|", 1))
    p = run("decode", "--protocol", "hl7", str(capture))
    assert p.returncode == 0
    assert len(p.stdout.decode().splitlines()) == 2
    err = p.stderr.decode().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"{capture}: byte ") and ", segment OBX: OBX-5 'abc'" in err[0]


def test_decode_masimo_from_stdin() -> None:
    p = run("decode", "--protocol", "masimo", "-", stdin=(DATA / "masimo_radical7.txt").read_bytes())
    assert p.returncode == 0
    kinds = [json.loads(line)["kind"] for line in p.stdout.decode().splitlines()]
    assert kinds.count("alarm") == 2 and kinds.count("observation") == 9


def test_unreadable_file_and_unknown_zone_exit_2_without_traceback(tmp_path: Path) -> None:
    p = run("decode", "--protocol", "hl7", str(tmp_path / "missing.hl7"))
    assert p.returncode == 2
    assert p.stderr.decode().count("\n") == 1 and b"Traceback" not in p.stderr and b"missing.hl7" in p.stderr
    p = run("decode", "--protocol", "hl7", "--tz", "Mars/Olympus", str(DATA / "pcd01_mllp.hl7"))
    assert p.returncode == 2 and b"Mars/Olympus" in p.stderr and b"Traceback" not in p.stderr
    p = run("decode", "--protocol", "hl7", str(tmp_path))
    assert p.returncode == 2 and b"Traceback" not in p.stderr
