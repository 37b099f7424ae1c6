"""devices/ stays sans-I/O: no transport, database or clock imports outside the simulators and CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import devices

PACKAGE = Path(devices.__file__).parent
FORBIDDEN = {
    "asyncio",
    "serial",
    "serial_asyncio",
    "serial_asyncio_fast",
    "socket",
    "sqlalchemy",
    "paho",
    "gateway",
    "hq",
    "selectors",
    "ssl",
    "subprocess",
    "threading",
    "time",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _pure_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.glob("*.py")) if p.name != "__main__.py"]


def test_pure_modules_exist() -> None:
    names = {p.name for p in _pure_modules()}
    assert {"hl7.py", "mllp.py", "masimo.py", "codes.py", "records.py"} <= names


def test_pure_modules_import_no_io_or_services() -> None:
    offenders = []
    for path in _pure_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_pure_modules_read_no_clock() -> None:
    offenders = []
    for path in _pure_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS:
                offenders.append(f"{path.name}:{node.lineno} .{node.func.attr}()")
    assert offenders == []
