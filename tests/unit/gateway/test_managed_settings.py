"""The settings HQ may manage: parsed with errors naming the key, laid over the TOML data, and held to the same
rules as the TOML file itself."""

from __future__ import annotations

import pytest

from gateway import managed_settings, tomlconfig
from gateway.config import GatewayConfig
from gateway.managed_settings import ManagedSettings

TOML = """
[gateway]
id = "gw-1"
[[serial]]
port = "/dev/ttyUSB0"
protocol = "masimo"
device_id = "oxi-1"
"""


def test_a_complete_version_round_trips() -> None:
    settings = ManagedSettings(heartbeat_s=2.0, live_window_s=30.0, silent_after_s={"oxi-1": 7.0})
    doc = settings.to_json()
    assert doc == {"status": {"heartbeat_s": 2.0}, "outbox": {"live_window_s": 30.0},
                   "serial": {"oxi-1": {"silent_after_s": 7.0}}}
    assert managed_settings.parse(doc) == settings
    assert managed_settings.parse({}) == ManagedSettings()


@pytest.mark.parametrize(("doc", "needle"), [
    ({"outbox": {"quota_bytes": 1}}, "outbox.quota_bytes cannot be changed from HQ"),
    ({"mqtt": {"host": "evil"}}, "mqtt cannot be changed from HQ"),
    ({"status": {"heartbeat_s": "fast"}}, "status.heartbeat_s = 'fast': expected a number"),
    ({"status": {"heartbeat_s": 0.5}}, "heartbeat_s 0.5 must be 1-3600"),
    ({"outbox": {"live_window_s": 2}}, "live_window_s 2 must be at least 5"),
    ({"serial": {"oxi-1": {"silent_after_s": 0}}}, "serial.oxi-1: silent_after_s 0 must be more than 0"),
    ({"serial": {"oxi-1": {"port": "/dev/x"}}}, "serial.oxi-1: expected exactly {silent_after_s}"),
    ([], "settings: expected an object"),
])
def test_bad_versions_are_refused_naming_the_key(doc: object, needle: str) -> None:
    with pytest.raises(ValueError) as caught:
        managed_settings.parse(doc)
    assert needle in str(caught.value)


def test_the_overlay_puts_values_in_the_toml_data_and_refuses_unknown_devices() -> None:
    import tomllib

    data = tomllib.loads(TOML)
    merged = managed_settings.overlay(data, ManagedSettings(heartbeat_s=3.0, silent_after_s={"oxi-1": 9.0}))
    config = tomlconfig.build(merged, GatewayConfig, "test")
    assert config.status.heartbeat_s == 3.0 and config.serial[0].silent_after_s == 9.0
    assert "heartbeat_s" not in data.get("status", {})  # the TOML data itself is untouched
    with pytest.raises(ValueError, match=r"no serial device .ecg-9..*it has oxi-1"):
        managed_settings.overlay(data, ManagedSettings(silent_after_s={"ecg-9": 9.0}))


def test_the_toml_file_obeys_the_same_rules() -> None:
    with pytest.raises(tomlconfig.ConfigError, match="live_window_s 2 must be at least 5"):
        tomlconfig.loads(TOML + "[outbox]\nlive_window_s = 2\n", GatewayConfig)
    with pytest.raises(tomlconfig.ConfigError, match=r"heartbeat_s 0\.5 must be 1-3600"):
        tomlconfig.loads(TOML + "[status]\nheartbeat_s = 0.5\n", GatewayConfig)
