"""Cameras for real: a camera whose video is not H.264 is decoded and encoded once for all its viewers; a
camera's substream is its low-rate copy; a camera that stalls is reported silent and opened again; one whose
SPS/PPS come only in its SDP still gives viewers keyframes they can decode."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest

from gateway.capture import DeviceHealth
from gateway.config import CameraConfig, MediaSection
from gateway.media import h264
from gateway.media.camera import Camera
from gateway.media.relay import RelayedTrack
from tests.support.rtsp_camera import RtspCamera, load_ts
from tests.support.synthetic_camera import FramePainter, write_ts


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cams")
    mjpeg = d / "usb-like.mkv"
    with av.open(str(mjpeg), "w") as out:
        stream = out.add_stream("mjpeg", rate=15)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuvj420p"
        painter = FramePainter(320, 240)
        for i in range(30):
            frame = painter.frame(i, 0).reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 15)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return {"mjpeg": mjpeg, "main": write_ts(d / "main.ts", seconds=2, audio=False),
            "sub": write_ts(d / "sub.ts", width=160, height=120, seconds=2, audio=False, kbps=100)}


@contextlib.asynccontextmanager
async def running(camera: Camera) -> AsyncIterator[Camera]:
    task = asyncio.create_task(camera.run())
    try:
        yield camera
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def camera(config: CameraConfig, states: list[str] | None = None, media: MediaSection | None = None) -> Camera:
    async def on_state(health: DeviceHealth, _detail: str) -> None:
        if states is not None:
            states.append(health.state)
    return Camera(config, media or MediaSection(), DeviceHealth(config.id, str(config.kind), config.url or ""),
                  on_state)


async def packets(track: RelayedTrack, n: int, timeout_s: float = 20.0) -> list[bytes]:
    out = []
    async with asyncio.timeout(timeout_s):
        while len(out) < n:
            out.append(bytes(await track.recv()))
    return out


def decoded_size(access_units: list[bytes]) -> tuple[int, int]:
    """The picture size of the first access units that decode (a switch may leave the old stream's tail first)."""
    decoder = av.CodecContext.create("h264", "r")
    for unit in access_units:
        with contextlib.suppress(av.FFmpegError):
            for frame in decoder.decode(av.Packet(unit)):
                return frame.width, frame.height
    raise AssertionError("nothing decoded")


async def test_a_camera_that_is_not_h264_is_encoded_once_for_every_viewer(clips: dict[str, Path]) -> None:
    async with running(camera(CameraConfig(id="usb", url=str(clips["mjpeg"])))) as cam:
        viewers = [cam.main.subscribe() for _ in range(3)]
        got = await asyncio.gather(*(packets(v, 20) for v in viewers))
        assert all(h264.is_keyframe(g[0]) and h264.has_parameter_sets(g[0]) for g in got)  # H.264 now
        assert decoded_size(got[0]) == (320, 240)
        encoder = cam._encoder
        assert encoder is not None and encoder.frames_encoded <= encoder.frames_in  # once per frame, not per viewer
        for v in viewers:
            v.stop()


async def test_a_cameras_substream_is_its_low_rate_copy(clips: dict[str, Path]) -> None:
    async with RtspCamera(load_ts(clips["main"])) as main, RtspCamera(load_ts(clips["sub"])) as sub, \
            running(camera(CameraConfig(id="ip", url=main.url, substream_url=sub.url))) as cam:
        assert cam.low_copy is None  # no encoding: the camera has its own low-rate stream
        viewer = cam.main.subscribe()
        assert decoded_size(await packets(viewer, 5)) == (320, 240)
        viewer.switch(cam.low)
        deadline = time.monotonic() + 20
        while viewer.source is not cam.low:
            assert time.monotonic() < deadline, "never switched to the substream"
            await viewer.recv()
        # The main stream's frames still queued went first; the substream's keyframes are 160x120.
        keyframes = [u for u in await packets(viewer, 40) if h264.is_keyframe(u)]
        assert keyframes and decoded_size(keyframes[-1:]) == (160, 120)
        viewer.stop()


async def test_a_stalled_camera_is_reported_and_opened_again(clips: dict[str, Path]) -> None:
    states: list[str] = []
    async with RtspCamera(load_ts(clips["main"]), parameter_sets=False) as rtsp, \
            running(camera(CameraConfig(id="ip", url=rtsp.url, stall_timeout_s=2), states)) as cam:
        viewer = cam.main.subscribe()
        first = await packets(viewer, 3)
        # SPS/PPS only in the camera's SDP: the relay puts them in front of its keyframes.
        assert h264.has_parameter_sets(first[0]) and decoded_size(first) == (320, 240)
        rtsp.stalled = True  # the connection stays open, the video stops
        deadline = time.monotonic() + 20
        while "silent" not in states:
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.1)
        rtsp.stalled = False
        while states[-1] != "ok":
            assert time.monotonic() < deadline + 20, states
            await asyncio.sleep(0.1)
        assert cam.opens >= 2 and rtsp.sessions_started >= 2
        viewer.stop()
