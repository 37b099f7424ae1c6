"""HQ-managed settings on the gateway: the version persisted in the data directory (so it survives a restart),
and applying a new version HQ sends as a notice of kind "config": validated with the TOML file's own rules,
stored, put into effect at once, and answered applied or rejected (with the reason) in the notice's receipt.

Which settings HQ may manage, and their rules, is `gateway.managed_settings`; the validation of the whole
configuration is the one config loader's (`gateway.tomlconfig`). The TOML file itself is never rewritten.
"""

from __future__ import annotations

import json
import logging
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import managed_settings, tomlconfig, wire
from gateway.atomic_file import write_atomically
from gateway.config import GatewayConfig
from gateway.inbox import Handled
from gateway.managed_settings import ManagedSettings

log = logging.getLogger(__name__)

NOTICE_KIND = "config"
FILE_NAME = "managed-settings.json"  # in gateway.data_dir: the service may write there, not in /etc


class RemoteConfigError(Exception):
    """The persisted managed settings cannot be used; the message says why."""


@dataclass(frozen=True)
class ManagedVersion:
    version: int
    settings: ManagedSettings
    applied_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "settings": self.settings.to_json(), "applied_ms": self.applied_ms}


def managed_path(config: GatewayConfig) -> Path:
    return config.gateway.data_dir / FILE_NAME


def read_version(path: Path) -> ManagedVersion | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RemoteConfigError(f"{path}: not readable JSON: {exc}") from exc
    try:
        version, applied_ms = doc["version"], doc["applied_ms"]
        if not isinstance(version, int) or version < 1 or not isinstance(applied_ms, int):
            raise ValueError("version must be a positive integer and applied_ms an integer")
        return ManagedVersion(version, managed_settings.parse(doc["settings"]), applied_ms)
    except (KeyError, TypeError, ValueError) as exc:
        raise RemoteConfigError(f"{path}: not a managed settings file: {exc}") from exc


def configure(toml_data: dict[str, Any], settings: ManagedSettings, source: str) -> GatewayConfig:
    """The configuration of the TOML data with `settings` laid over it, validated as a whole; ValueError
    (a tomlconfig.ConfigError included) says what is wrong."""
    return tomlconfig.build(managed_settings.overlay(toml_data, settings), GatewayConfig, source)


@dataclass(frozen=True)
class Loaded:
    config: GatewayConfig  # what the gateway runs with
    toml_data: dict[str, Any]
    source: str
    managed: ManagedVersion | None  # None: the TOML file alone
    problem: str | None = None  # why a persisted version was not used


def load(path: Path) -> Loaded:
    """The TOML file (errors with file and line, as always), with the persisted managed version over it if there
    is one and it still fits the file; raises tomlconfig.ConfigError for a broken TOML file."""
    base = tomlconfig.load(path, GatewayConfig)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    source = str(path)
    try:
        managed = read_version(managed_path(base))
        if managed is None:
            return Loaded(base, data, source, None)
        return Loaded(configure(data, managed.settings, f"HQ-managed settings v{managed.version} over {path}"),
                      data, source, managed)
    except (RemoteConfigError, ValueError) as exc:
        # The gateway must run regardless (offline first): on its TOML file, and HQ sees version 0.
        return Loaded(base, data, source, None, str(exc))


class RemoteConfig:
    """Handles "config" notices; `apply` puts a validated configuration into effect in the running gateway."""

    def __init__(self, loaded: Loaded, apply: Callable[[GatewayConfig], None],
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._toml_data = loaded.toml_data
        self._source = loaded.source
        self._path = managed_path(loaded.config)
        self.current = loaded.managed
        self._apply = apply
        self._clock_ms = clock_ms

    @property
    def version(self) -> int:
        return self.current.version if self.current is not None else 0

    async def handle(self, notice: wire.Notice) -> Handled:
        body = notice.body
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            return Handled("rejected", f"version = {version!r}: expected a positive integer")
        if version < self.version:
            return Handled("rejected", f"v{version} is older than v{self.version}, which this gateway already runs")
        if version == self.version:
            return Handled("applied", f"v{version} already in effect")
        try:
            settings = managed_settings.parse(body.get("settings"))
            config = configure(self._toml_data, settings, f"HQ-managed settings v{version} over {self._source}")
        except ValueError as exc:
            return Handled("rejected", str(exc))
        managed = ManagedVersion(version, settings, self._clock_ms())
        try:
            write_atomically(self._path, json.dumps(managed.to_json(), indent=1).encode())
        except OSError as exc:
            return Handled("rejected", f"cannot store it in {self._path}: {exc.strerror or exc}")
        self.current = managed
        self._apply(config)
        log.info("HQ-managed settings v%d in effect: %s", version, settings.to_json())
        return Handled("applied", f"v{version} in effect")
