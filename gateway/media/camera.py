"""A camera: kept open (aiortc's MediaPlayer, in FFmpeg's threads), its H.264 relayed as it comes, its voice too,
reopened with backoff when it drops or stalls, its state reported like any device's (ok / silent /
disconnected, an event to HQ at each change).

H.264 is forwarded without decoding (`MediaPlayer(decode=False)`); anything else is decoded and encoded once
here. The low-rate copy for weak links comes from the camera's substream when it has one, else it is encoded
once from the main stream, and only while a viewer needs it. Not the relay to viewers (`gateway.media.relay`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import av
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.capture import DeviceHealth, DeviceState
from gateway.config import CameraConfig, CameraKind, MediaSection, camera_kind
from gateway.media import h264
from gateway.media.encoder import AUDIO_TIME_BASE, VIDEO_TIME_BASE, AudioEncoder, VideoEncoder
from gateway.media.relay import PacketRelay
from gateway.media.timestamps import AUDIO_CLOCK, VIDEO_CLOCK, TimestampMapper

log = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
OPEN_TIMEOUT_US = 10_000_000  # FFmpeg's socket timeout for RTSP: a dead camera fails instead of hanging
LOW_COPY_IDLE_S = 10.0  # the low-rate copy stops this long after its last viewer left
LOW_COPY_QUEUE = 45  # packets waiting for the low copy's decoder at most; beyond, it skips to a keyframe
PASSTHROUGH_CODECS = ("h264",)


class CameraError(Exception):
    """A camera cannot be opened or read; the message says which and why."""


class CameraStalled(CameraError):
    """A camera is open but sends no video."""


@dataclass(frozen=True, slots=True)
class OpenSpec:
    """How FFmpeg is asked to open a stream."""

    url: str
    format: str | None
    options: dict[str, str]
    passthrough: bool  # H.264 forwarded as it comes (False: decoded, then encoded once by the gateway)


def redact(url: str) -> str:
    """The URL without credentials, for logs and HQ."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))


def with_credentials(url: str, username: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def open_spec(config: CameraConfig, url: str, *, passthrough: bool = True) -> OpenSpec:
    """FFmpeg's view of a camera: demuxer, options, and whether its video can be forwarded as it is."""
    kind = camera_kind(url)
    if kind is CameraKind.RTSP:
        return OpenSpec(url, "rtsp", {"rtsp_transport": str(config.rtsp_transport), "timeout": str(OPEN_TIMEOUT_US)},
                        passthrough)
    if kind is CameraKind.V4L2:
        options = {}
        if config.input_format:
            options["input_format"] = config.input_format
        if config.video_size:
            options["video_size"] = config.video_size
        if config.framerate:
            options["framerate"] = str(config.framerate)
        return OpenSpec(url, "v4l2", options, passthrough and config.input_format == "h264")
    path = url.removeprefix("file://")
    return OpenSpec(path, None, {}, passthrough)


def _open(spec: OpenSpec) -> MediaPlayer:
    return MediaPlayer(spec.url, format=spec.format, options=dict(spec.options), decode=not spec.passthrough)


def _close(player: MediaPlayer) -> None:
    # Stopping joins FFmpeg's reader thread, which may sit in a read until its timeout: never on the loop.
    for track in (player.audio, player.video):
        if track is not None:
            with contextlib.suppress(Exception):
                track.stop()


class LowCopy:
    """A camera's low-rate copy made from its main stream: decoded and encoded once, while anyone watches it."""

    def __init__(self, relay: PacketRelay, media: MediaSection) -> None:
        self.relay = relay
        self.encoder = VideoEncoder(relay, kbps=media.low_tier_kbps, fps=media.low_tier_fps,
                                    max_height=media.low_tier_height)
        self._decoder: Any = None
        self._queue: collections.deque[tuple[av.Packet[Any], bool]] = collections.deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode-{relay.name}")
        self._idle_since: float | None = None
        self._synced = False
        self.active = False

    def feed(self, packet: av.Packet[Any], keyframe: bool) -> None:
        """Every main-stream packet; ignored while nobody watches the copy."""
        now = time.monotonic()
        if self.relay.viewers == 0:
            if self.active and self._idle_since is not None and now - self._idle_since > LOW_COPY_IDLE_S:
                self.active, self._synced, self._decoder = False, False, None
                self._queue.clear()
                log.info("%s: nobody watches it: stopped", self.relay.name)
            self._idle_since = self._idle_since or now
            if not self.active:
                return
        else:
            self._idle_since = None
            if not self.active:
                log.info("%s: a viewer needs it: encoding a low-rate copy", self.relay.name)
                self.active = True
        if not self._synced and not keyframe:
            return
        if len(self._queue) >= LOW_COPY_QUEUE:
            self._queue.clear()  # the decoder fell behind: start again at a keyframe
            self._synced = False
            if not keyframe:
                return
        self._synced = True
        self._queue.append((packet, keyframe))
        self._wake.set()

    def feed_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """A decoded frame of a camera the gateway encodes anyway: no decoding needed for the copy."""
        if self.relay.viewers:
            self.encoder.submit(frame, pts)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.encoder.run())
            try:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    while self._queue:
                        packet, _keyframe = self._queue.popleft()
                        for frame, pts in await loop.run_in_executor(self._executor, self._decode, packet):
                            self.encoder.submit(frame, pts)
            finally:
                self._executor.shutdown(wait=False, cancel_futures=True)

    def _decode(self, packet: av.Packet[Any]) -> list[tuple[av.VideoFrame, int]]:
        if self._decoder is None:
            self._decoder = av.CodecContext.create("h264", "r")
            self._decoder.thread_count = 1
        pts = int(packet.pts or 0)
        try:
            return [(frame, pts) for frame in self._decoder.decode(packet)]
        except av.FFmpegError as exc:
            log.debug("%s: decoding for the low-rate copy failed: %s", self.relay.name, exc)
            return []


StateListener = Callable[[DeviceHealth, str], Awaitable[None]]
UrlResolver = Callable[[], str | None]


class Camera:
    """One camera's relays: `main` (its own stream), `low` (a low-rate copy), `audio` (its microphone, Opus)."""

    def __init__(self, config: CameraConfig, media: MediaSection, health: DeviceHealth, on_state: StateListener,
                 *, resolve: UrlResolver | None = None) -> None:
        self.config = config
        self.media = media
        self.health = health
        self.on_state = on_state
        self.resolve = resolve or (lambda: config.url)
        self.main = PacketRelay(f"{config.id}/main", "video", max_queued=90)
        self.low = PacketRelay(f"{config.id}/low", "video")
        self.audio = PacketRelay(f"{config.id}/audio", "audio")
        self.has_audio = False
        self.low_copy = None if config.substream_url else LowCopy(self.low, media)
        self._encoder: VideoEncoder | None = None  # for a camera whose video cannot be forwarded as it is
        self._audio_encoder: AudioEncoder | None = None
        self._video_clock = TimestampMapper(VIDEO_CLOCK)
        self._substream_clock = TimestampMapper(VIDEO_CLOCK)  # anchored like the main stream's: switchable
        self._audio_clock = TimestampMapper(AUDIO_CLOCK)
        self._passthrough = True
        self.opens = 0
        self.packets = 0

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def label(self) -> str:
        return self.config.display_name

    def tier_relays(self) -> dict[str, PacketRelay]:
        return {"main": self.main, "low": self.low}

    def tier_kbps(self) -> dict[str, float]:
        """Each tier's bitrate now (nominal until it has run for a while)."""
        main = self.main.kbps() or float(self.media.video_kbps)
        low = self.low.kbps() if self.low.viewers and self.low.kbps() else float(self.media.low_tier_kbps)
        return {"main": main, "low": min(low, main)}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._keep_open(main=True))
            if self.config.substream_url:
                tg.create_task(self._keep_open(main=False))
            elif self.low_copy is not None:
                tg.create_task(self.low_copy.run())

    async def _set_state(self, state: str, detail: str) -> None:
        if self.health.state == state:
            return
        self.health.state = state
        log.info("camera %s (%s) is %s: %s", self.id, self.health.source, state, detail)
        await self.on_state(self.health, detail)

    async def _keep_open(self, *, main: bool) -> None:
        failures = 0
        while True:
            url = self.resolve() if main else self.config.substream_url
            if url is None:
                if main:
                    await self._set_state(DeviceState.DISCONNECTED, f"{self.config.mdns_name!r} not found on the LAN")
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
                continue
            if main:
                self.health.source = redact(url)
            try:
                await self._read(url, main=main)
                failures = 0  # a file ending (it loops) or a stream that ran for a while: reopen at once
            except Exception as exc:
                if not isinstance(exc, CameraError):
                    log.exception("camera %s: reading failed", self.id)
                if main:
                    state = DeviceState.SILENT if isinstance(exc, CameraStalled) else DeviceState.DISCONNECTED
                    await self._set_state(state, str(exc))
                else:
                    log.warning("camera %s substream: %s", self.id, exc)
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1

    def _credentials(self, url: str) -> str:
        if self.config.username_file is None or self.config.password_file is None:
            return url
        try:
            user = Path(self.config.username_file).read_text(encoding="utf-8").strip()
            password = Path(self.config.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CameraError(f"cannot read the credentials of camera {self.id}: {exc}") from exc
        return with_credentials(url, user, password)

    async def _read(self, url: str, *, main: bool) -> None:
        spec = open_spec(self.config, self._credentials(url), passthrough=self._passthrough or not main)
        shown = redact(spec.url)
        try:
            player = await asyncio.to_thread(_open, spec)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise CameraError(f"cannot open {shown}: {exc}") from exc
        self.opens += 1
        try:
            if player.video is None:
                if spec.passthrough and main:
                    # Not H.264 (MJPEG, H.265, raw): decode it and encode it once, from the next open on.
                    self._passthrough = False
                    log.info("camera %s: its video is not H.264; the gateway encodes it", self.id)
                    return
                raise CameraError(f"{shown} has no video the gateway can use")
            relay = self.main if main else self.low
            relay.restart()
            if not spec.passthrough and self._encoder is None:
                self._encoder = VideoEncoder(self.main, kbps=self.media.video_kbps)
            # Plain tasks, not a TaskGroup: the video pump's CameraError must reach `_keep_open` as it is.
            helpers = [asyncio.create_task(self._encoder.run())] if not spec.passthrough and self._encoder else []
            if main and player.audio is not None:
                helpers.append(asyncio.create_task(self._pump_audio(player.audio)))
            try:
                await self._pump_video(player.video, relay, spec, main=main)
            finally:
                for task in helpers:
                    task.cancel()
                for task in helpers:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            await asyncio.to_thread(_close, player)

    async def _pump_video(self, track: MediaStreamTrack, relay: PacketRelay, spec: OpenSpec, *, main: bool) -> None:
        stall = self.config.stall_timeout_s
        first = True
        parameter_sets = b""
        while True:
            try:
                async with asyncio.timeout(stall):
                    item = await track.recv()
            except TimeoutError:
                raise CameraStalled(f"no video for {stall:.0f} s from {redact(spec.url)}") from None
            except MediaStreamError:
                if camera_kind(spec.url) is CameraKind.FILE:
                    return  # the end of a file: it plays again
                raise CameraError(f"{redact(spec.url)} ended the stream") from None
            now = time.monotonic()
            if first and main:
                first = False
                await self._set_state(DeviceState.OK, "receiving video")
            self.packets += 1
            self.health.last_byte_ms = time.time_ns() // 1_000_000
            if not isinstance(item, av.Packet):
                assert isinstance(item, av.VideoFrame)
                pts = self._video_clock.map(item.time, now)
                assert self._encoder is not None
                self._encoder.submit(item, pts)
                if self.low_copy is not None:
                    self.low_copy.feed_frame(item, pts)
                continue
            if item.stream is not None and item.stream.codec_context.name not in PASSTHROUGH_CODECS:
                if main:
                    self._passthrough = False  # e.g. VP8: decoded and encoded once, from the next open on
                    return
                raise CameraError(f"{redact(spec.url)} sends {item.stream.codec_context.name}, not H.264")
            data = bytes(item)
            if not parameter_sets and item.stream is not None:
                with contextlib.suppress(h264.H264Error):
                    parameter_sets = h264.annexb_parameter_sets(item.stream.codec_context.extradata)
            keyframe = h264.is_keyframe(data)
            if keyframe and not h264.has_parameter_sets(data):
                if not parameter_sets:
                    continue  # a decoder could not start here: wait for a keyframe with its SPS/PPS
                data = h264.with_parameter_sets(data, parameter_sets)
            elif keyframe:
                parameter_sets = b"".join(h264.START_CODE + n for n in h264.split_nals(data)
                                          if h264.nal_type(n) in (h264.NAL_SPS, h264.NAL_PPS))
            packet = av.Packet(data)
            src = None if item.pts is None or item.time_base is None else float(item.pts * item.time_base)
            clock = self._video_clock if main else self._substream_clock
            packet.pts = packet.dts = clock.map(src, now)
            packet.time_base = VIDEO_TIME_BASE
            relay.push(packet, keyframe)
            if main and self.low_copy is not None:
                self.low_copy.feed(packet, keyframe)

    async def _pump_audio(self, track: MediaStreamTrack) -> None:
        decoder: Any = None
        while True:
            try:
                item = await track.recv()
            except MediaStreamError:
                return
            if not self.config.audio:
                continue  # read anyway: MediaPlayer queues what nobody reads
            self.has_audio = True
            now = time.monotonic()
            if not isinstance(item, av.Packet):
                assert isinstance(item, av.AudioFrame)
                self._voice_encoder().encode(item)
                continue
            name = item.stream.codec_context.name if item.stream is not None else "opus"
            if name == "opus":
                packet = av.Packet(bytes(item))
                src = None if item.pts is None or item.time_base is None else float(item.pts * item.time_base)
                packet.pts = packet.dts = self._audio_clock.map(src, now)
                packet.time_base = AUDIO_TIME_BASE
                self.audio.push(packet, False)
                continue
            if decoder is None:  # G.711: decoded here, encoded to Opus once
                decoder = av.CodecContext.create(name, "r")
            with contextlib.suppress(av.FFmpegError):
                for frame in decoder.decode(item):
                    self._voice_encoder().encode(frame)

    def _voice_encoder(self) -> AudioEncoder:
        if self._audio_encoder is None:
            self._audio_encoder = AudioEncoder(self.audio, kbps=self.media.audio_kbps)
        return self._audio_encoder
