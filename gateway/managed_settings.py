"""The settings HQ may change on a gateway from the console, and the rules their values obey.

Only settings that cannot cut the gateway off from HQ or from its devices, and whose wrong values a rule
refuses: how often it reports (status.heartbeat_s), how soon unsent vitals give way to fresh ones
(outbox.live_window_s), and when a serial device counts as silent (serial[].silent_after_s, per device id).
Identity, broker and TLS, ports, paths, quota and replication stay in the local TOML. Pure; shared by
gateway.config (the same rules for the TOML file), the gateway's remote-config handler and HQ's console.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

HEARTBEAT_MIN_S, HEARTBEAT_MAX_S = 1.0, 3600.0
LIVE_WINDOW_MIN_S = 5.0
SILENT_AFTER_MAX_S = 86400.0


def check_heartbeat_s(value: float) -> None:
    if not HEARTBEAT_MIN_S <= value <= HEARTBEAT_MAX_S:
        raise ValueError(f"heartbeat_s {value:g} must be {HEARTBEAT_MIN_S:g}-{HEARTBEAT_MAX_S:g}")


def check_live_window_s(value: float) -> None:
    if value < LIVE_WINDOW_MIN_S:
        raise ValueError(f"live_window_s {value:g} must be at least {LIVE_WINDOW_MIN_S:g}")


def check_silent_after_s(value: float) -> None:
    if not 0 < value <= SILENT_AFTER_MAX_S:
        raise ValueError(f"silent_after_s {value:g} must be more than 0 and at most {SILENT_AFTER_MAX_S:g} (a day)")


@dataclass(frozen=True)
class ManagedSettings:
    """One complete set of HQ-managed values; a setting left None (or a device not named) keeps the TOML's."""

    heartbeat_s: float | None = None
    live_window_s: float | None = None
    silent_after_s: dict[str, float] = field(default_factory=dict)  # serial device id -> seconds

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.heartbeat_s is not None:
            doc["status"] = {"heartbeat_s": self.heartbeat_s}
        if self.live_window_s is not None:
            doc["outbox"] = {"live_window_s": self.live_window_s}
        if self.silent_after_s:
            doc["serial"] = {dev: {"silent_after_s": s} for dev, s in sorted(self.silent_after_s.items())}
        return doc


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} = {value!r}: expected a number of seconds")
    return float(value)


def _table(doc: dict[str, Any], name: str, keys: set[str]) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ValueError(f"{name}: expected a table")
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ValueError(f"{name}.{unknown[0]} cannot be changed from HQ; expected only {', '.join(sorted(keys))}")
    return table


def parse(doc: Any) -> ManagedSettings:
    """The settings of `doc` (the JSON of `ManagedSettings.to_json`), checked; ValueError names the key."""
    if not isinstance(doc, dict):
        raise ValueError("settings: expected an object")
    unknown = sorted(set(doc) - {"status", "outbox", "serial"})
    if unknown:
        raise ValueError(f"{unknown[0]} cannot be changed from HQ; expected status, outbox or serial")
    status = _table(doc, "status", {"heartbeat_s"})
    outbox = _table(doc, "outbox", {"live_window_s"})
    serial = doc.get("serial", {})
    if not isinstance(serial, dict):
        raise ValueError("serial: expected a table of device id -> {silent_after_s}")
    heartbeat = _number(status["heartbeat_s"], "status.heartbeat_s") if "heartbeat_s" in status else None
    window = _number(outbox["live_window_s"], "outbox.live_window_s") if "live_window_s" in outbox else None
    silent: dict[str, float] = {}
    for device_id, entry in serial.items():
        if not isinstance(entry, dict) or set(entry) != {"silent_after_s"}:
            raise ValueError(f"serial.{device_id}: expected exactly {{silent_after_s}}")
        silent[device_id] = _number(entry["silent_after_s"], f"serial.{device_id}.silent_after_s")
    if heartbeat is not None:
        check_heartbeat_s(heartbeat)
    if window is not None:
        check_live_window_s(window)
    for device_id, seconds in silent.items():
        try:
            check_silent_after_s(seconds)
        except ValueError as exc:
            raise ValueError(f"serial.{device_id}: {exc}") from None
    return ManagedSettings(heartbeat, window, silent)


def overlay(data: dict[str, Any], settings: ManagedSettings) -> dict[str, Any]:
    """The gateway's parsed TOML with the managed values in place (a copy), to be validated as a whole by the
    one config loader. ValueError when a managed device id is not among the TOML's [[serial]] devices."""
    merged = copy.deepcopy(data)
    if settings.heartbeat_s is not None:
        merged.setdefault("status", {})["heartbeat_s"] = settings.heartbeat_s
    if settings.live_window_s is not None:
        merged.setdefault("outbox", {})["live_window_s"] = settings.live_window_s
    devices = {d.get("device_id"): d for d in merged.get("serial", []) if isinstance(d, dict)}
    for device_id, seconds in settings.silent_after_s.items():
        if device_id not in devices:
            raise ValueError(f"serial.{device_id}: no serial device {device_id!r} in this gateway's configuration "
                             f"(it has {', '.join(sorted(map(str, devices))) or 'none'})")
        devices[device_id]["silent_after_s"] = seconds
    return merged
