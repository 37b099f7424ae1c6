"""The arrows of ARCHITECTURE.md, enforced: gateway -> devices, hq -> devices, hq -> gateway's shared
platform modules only, and nothing in devices/ or gateway/ reaching into hq/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What HQ may use of the gateway package: the wire contract (with its consultation and appointment parts, which
# HQ writes and the gateway reads, pure like wire) and its transport, the config loader, the Prometheus
# exposition, Litestream replication and systemd's notification protocol (both services run under systemd with a
# watchdog). The X.509 building blocks both ends of an enrolment need (tls_identity: the gateway makes the
# request HQ's CA signs), the crash-safe file writer both use for keys and certificates, and the settings HQ may
# manage on a gateway with their rules (managed_settings: the console checks a version with the rules the
# gateway applies). Everything else in gateway/ is the clinic service's own business.
HQ_MAY_IMPORT_FROM_GATEWAY = {"gateway", "gateway.wire", "gateway.consultation_wire", "gateway.appointment_wire",
                              "gateway.mqttlink", "gateway.tomlconfig", "gateway.prometheus", "gateway.replication",
                              "gateway.sdnotify", "gateway.tls_identity", "gateway.atomic_file",
                              "gateway.managed_settings"}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names if node.module == "gateway")
    return found


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("devices"), ids=str)
def test_devices_import_neither_gateway_nor_hq(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] in ("gateway", "hq")}
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


@pytest.mark.parametrize("path", modules("gateway"), ids=str)
def test_gateway_does_not_import_hq(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] == "hq"}
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


@pytest.mark.parametrize("path", modules("hq"), ids=str)
def test_hq_uses_only_the_shared_gateway_modules(path: Path) -> None:
    bad = {m for m in imports(path) if m.split(".")[0] == "gateway" and m not in HQ_MAY_IMPORT_FROM_GATEWAY}
    assert not bad, f"{path.relative_to(REPO)} imports {bad}; allowed: {sorted(HQ_MAY_IMPORT_FROM_GATEWAY)}"


def test_shared_gateway_modules_import_nothing_else_of_the_gateway() -> None:
    for name in HQ_MAY_IMPORT_FROM_GATEWAY - {"gateway"}:
        path = REPO / (name.replace(".", "/") + ".py")
        bad = {m for m in imports(path) if m.startswith("gateway") and m not in HQ_MAY_IMPORT_FROM_GATEWAY}
        assert not bad, f"{name} imports {bad}"
