"""The gateway's handler of HQ-managed settings: a version is validated with the TOML file's rules, stored in
the data directory, put into effect, and answered applied or rejected; it survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import wire
from gateway.config import GatewayConfig
from gateway.remote_config import FILE_NAME, RemoteConfig, load


def write_toml(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[gateway]\nid = "gw-1"\ndata_dir = "{tmp_path / "data"}"\n[status]\nheartbeat_s = 10\n'
                    '[[serial]]\nport = "/dev/ttyUSB0"\nprotocol = "masimo"\ndevice_id = "oxi-1"\n' + extra)
    return path


def notice(version: object, settings: object, notice_id: int = 1) -> wire.Notice:
    return wire.Notice(notice_id, "config", {"version": version, "settings": settings}, 0)


@pytest.fixture
def applied() -> list[GatewayConfig]:
    return []


async def test_a_valid_version_is_stored_and_put_into_effect(tmp_path: Path, applied: list[GatewayConfig]) -> None:
    remote = RemoteConfig(load(write_toml(tmp_path)), applied.append)
    assert remote.version == 0
    done = await remote.handle(notice(1, {"status": {"heartbeat_s": 2}, "serial": {"oxi-1": {"silent_after_s": 7}}}))
    assert (done.outcome, remote.version) == ("applied", 1)
    assert applied[-1].status.heartbeat_s == 2.0 and applied[-1].serial[0].silent_after_s == 7.0
    assert (tmp_path / "data" / FILE_NAME).exists()
    assert (await remote.handle(notice(1, {}))).outcome == "applied"  # the same version again: nothing to do
    # After a restart the gateway runs with what HQ set, over its unchanged TOML file.
    reloaded = load(tmp_path / "gateway.toml")
    assert reloaded.managed is not None and reloaded.managed.version == 1
    assert reloaded.config.status.heartbeat_s == 2.0 and reloaded.problem is None


@pytest.mark.parametrize(("settings", "needle"), [
    ({"outbox": {"live_window_s": 1}}, "live_window_s 1 must be at least 5"),
    ({"serial": {"ecg-2": {"silent_after_s": 5}}}, "no serial device 'ecg-2'"),
    ({"http": {"port": 80}}, "http cannot be changed from HQ"),
])
async def test_an_invalid_version_is_rejected_with_the_reason(tmp_path: Path, applied: list[GatewayConfig],
                                                              settings: object, needle: str) -> None:
    remote = RemoteConfig(load(write_toml(tmp_path)), applied.append)
    done = await remote.handle(notice(1, settings))
    assert done.outcome == "rejected" and done.detail is not None and needle in done.detail
    assert remote.version == 0 and applied == [] and not (tmp_path / "data" / FILE_NAME).exists()


async def test_an_older_version_never_replaces_a_newer_one(tmp_path: Path, applied: list[GatewayConfig]) -> None:
    remote = RemoteConfig(load(write_toml(tmp_path)), applied.append)
    assert (await remote.handle(notice(3, {"status": {"heartbeat_s": 3}}))).outcome == "applied"
    late = await remote.handle(notice(2, {"status": {"heartbeat_s": 2}}, notice_id=2))
    assert late.outcome == "rejected" and "older than v3" in str(late.detail)
    assert remote.version == 3 and applied[-1].status.heartbeat_s == 3.0


async def test_a_version_that_cannot_be_stored_is_rejected(tmp_path: Path, applied: list[GatewayConfig]) -> None:
    path = write_toml(tmp_path)
    (tmp_path / "data").write_text("a file where the data directory should be")
    remote = RemoteConfig(load(path), applied.append)
    done = await remote.handle(notice(1, {"status": {"heartbeat_s": 2}}))
    assert done.outcome == "rejected" and "cannot store it" in str(done.detail) and applied == []


async def test_a_stored_version_that_no_longer_fits_the_toml_is_set_aside(tmp_path: Path,
                                                                        applied: list[GatewayConfig]) -> None:
    path = write_toml(tmp_path)
    remote = RemoteConfig(load(path), applied.append)
    await remote.handle(notice(1, {"serial": {"oxi-1": {"silent_after_s": 7}}}))
    path.write_text(path.read_text().replace('device_id = "oxi-1"', 'device_id = "oxi-2"'))  # the operator renamed it
    reloaded = load(path)
    assert reloaded.managed is None and "no serial device 'oxi-1'" in str(reloaded.problem)
    assert reloaded.config.serial[0].silent_after_s == 15.0  # the TOML's own value
