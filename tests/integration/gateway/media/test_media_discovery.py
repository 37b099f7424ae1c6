"""Cameras found by mDNS on loopback (never the machine's real network): a configured camera named by its
announced name is found, and found again at its new address; with discover_cameras, an announcing camera
nobody configured is used too, and shows among the gateway's devices."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import tomlconfig
from gateway.config import GatewayConfig
from gateway.media.discovery import camera_id
from gateway.media.service import MediaService
from gateway.mqttlink import LinkSettings, MqttLink
from tests.support.rtsp_camera import RtspCamera, announce, load_ts
from tests.support.synthetic_camera import write_ts


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ts(tmp_path_factory.mktemp("media") / "clip.ts", seconds=2, audio=False)


@contextlib.asynccontextmanager
async def service(tmp_path: Path, extra: str) -> AsyncIterator[MediaService]:
    config = tomlconfig.loads(f'[gateway]\nid = "gw-mdns"\ndata_dir = "{tmp_path}"\n'
                              f'[media]\ndiscovery_interfaces = ["127.0.0.1"]\n{extra}', GatewayConfig, "t.toml")
    link = MqttLink(LinkSettings("127.0.0.1", 1, "gw-mdns"))  # never connected: no broker needed here
    media = MediaService(config, link, store=_store, devices={}, on_device_change=lambda: None)
    task = asyncio.create_task(media.run())
    try:
        yield media
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _store(entries: object) -> list[int]:
    return []


async def video_arrives(media: MediaService, camera_index: int = 0, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not media.cameras or media.cameras[camera_index].main.packets_in < 10:
        if time.monotonic() > deadline:
            states = {c.id: c.health.state for c in media.cameras}
            raise AssertionError(f"no video from the camera found by mDNS within {timeout_s} s: {states}")
        await asyncio.sleep(0.2)


async def test_a_camera_named_by_mdns_is_found_and_followed_to_its_new_address(tmp_path: Path, clip: Path) -> None:
    units = load_ts(clip)
    async with RtspCamera(units, path="/live") as first, \
            service(tmp_path, '[[camera]]\nid = "exam"\nmdns_name = "Exam room camera"\n') as media:
        zc = await asyncio.to_thread(announce, "Exam room camera", first.port, "/live")
        try:
            await video_arrives(media)
            assert media.devices["exam"].source == first.url
        finally:
            await asyncio.to_thread(zc.close)  # type: ignore[attr-defined]
        await first.stop()
        async with RtspCamera(units, path="/live") as moved:  # the camera got another address (port) from DHCP
            zc = await asyncio.to_thread(announce, "Exam room camera", moved.port, "/live")
            try:
                before = media.cameras[0].main.packets_in
                deadline = time.monotonic() + 45
                while media.devices["exam"].source != moved.url or media.cameras[0].main.packets_in < before + 10:
                    assert time.monotonic() < deadline, f"not followed: {media.devices['exam']}"
                    await asyncio.sleep(0.2)
            finally:
                await asyncio.to_thread(zc.close)  # type: ignore[attr-defined]


async def test_discover_cameras_uses_a_camera_nobody_configured(tmp_path: Path, clip: Path) -> None:
    async with RtspCamera(load_ts(clip)) as camera, service(tmp_path, "discover_cameras = true\n") as media:
        zc = await asyncio.to_thread(announce, "Ward 3 / corridor", camera.port, "/stream")
        try:
            await video_arrives(media)
            assert [c.id for c in media.cameras] == ["ward-3-corridor"]
            assert media.devices["ward-3-corridor"].state == "ok"
            assert media.devices["ward-3-corridor"].protocol == "rtsp"
        finally:
            await asyncio.to_thread(zc.close)  # type: ignore[attr-defined]


def test_camera_ids_from_announced_names() -> None:
    assert camera_id("Exam room camera", set()) == "exam-room-camera"
    assert camera_id("Exam room camera", {"exam-room-camera"}) == "exam-room-camera-2"
    assert camera_id("摄像头", set()) == "camera"
