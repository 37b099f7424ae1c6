"""Encoding done once per source, for all of its viewers: H.264 for video the gateway cannot pass through (a USB
camera without H.264, a camera's low-rate copy, a participant's camera relayed to the others), Opus for voices.

Video encodes in a worker thread from a one-frame slot (the newest frame wins: a slow encoder drops frames, it
never queues them); Opus is cheap and runs on the loop. Not per-viewer: viewers only packetize what comes out.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av

from gateway.media.relay import PacketRelay
from gateway.media.timestamps import AUDIO_CLOCK, VIDEO_CLOCK, TimestampMapper

log = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL_S = 0.5  # keyframe requests (new viewers, PLI) closer together than this share one
RECONFIGURE_RATIO = 0.2  # a bitrate change smaller than this is not worth a new encoder (and keyframe)
OPUS_FRAME = 960  # 20 ms at 48 kHz
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_CLOCK)


def h264_encoder_options(fps: float) -> dict[str, str]:
    gop = str(max(1, round(fps)))  # a keyframe a second: a viewer joining waits at most that long
    return {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "g": gop, "keyint_min": gop,
            "sc_threshold": "0", "bf": "0"}


class VideoEncoder:
    """Decoded frames in (`submit`), H.264 access units out into `relay`, at most `fps` and `max_height`."""

    def __init__(self, relay: PacketRelay, *, kbps: int, fps: float = 30.0, max_height: int | None = None) -> None:
        self.relay = relay
        relay.on_keyframe_wanted = self.request_keyframe
        self.kbps = kbps
        self.fps = fps
        self.max_height = max_height
        self.frames_in = 0
        self.frames_encoded = 0
        self.frames_skipped = 0
        self._slot: tuple[av.VideoFrame, int] | None = None
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"encode-{relay.name}")
        self._codec: Any = None
        self._codec_kbps = 0
        self._keyframe_due = True
        self._last_keyframe_s = 0.0
        self._last_accepted_pts: int | None = None

    def submit(self, frame: av.VideoFrame, pts: int) -> None:
        """A frame with its output timestamp (90 kHz); replaces one still waiting for the encoder."""
        self.frames_in += 1
        if self._last_accepted_pts is not None and pts - self._last_accepted_pts < VIDEO_CLOCK / self.fps * 0.9:
            self.frames_skipped += 1  # above the frame rate cap
            return
        self._last_accepted_pts = pts
        if self._slot is not None:
            self.frames_skipped += 1
        self._slot = (frame, pts)
        self._wake.set()

    def request_keyframe(self) -> None:
        self._keyframe_due = True

    def set_kbps(self, kbps: int) -> None:
        self.kbps = kbps

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                item, self._slot = self._slot, None
                if item is None:
                    continue
                frame, pts = item
                keyframe = self._keyframe_due and time.monotonic() - self._last_keyframe_s >= KEYFRAME_MIN_INTERVAL_S
                if keyframe:
                    self._keyframe_due = False
                    self._last_keyframe_s = time.monotonic()
                packets = await loop.run_in_executor(self._executor, self._encode, frame, pts, keyframe)
                for packet in packets:
                    self.relay.push(packet, bool(packet.is_keyframe))
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _encode(self, frame: av.VideoFrame, pts: int, keyframe: bool) -> list[av.Packet[Any]]:
        if self.max_height is not None and frame.height > self.max_height:
            width = round(frame.width * self.max_height / frame.height / 2) * 2
            frame = frame.reformat(width=width, height=self.max_height, format="yuv420p")
        elif frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        codec = self._codec
        if (codec is None or codec.width != frame.width or codec.height != frame.height
                or abs(self.kbps - self._codec_kbps) > RECONFIGURE_RATIO * self._codec_kbps):
            codec = self._codec = self._new_codec(frame.width, frame.height)
            keyframe = True
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        packets = list(codec.encode(frame))
        for packet in packets:
            packet.pts = packet.dts = pts
            packet.time_base = VIDEO_TIME_BASE
        self.frames_encoded += 1
        return packets

    def _new_codec(self, width: int, height: int) -> Any:
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.bit_rate = self.kbps * 1000
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = fractions.Fraction(round(self.fps), 1)
        codec.options = h264_encoder_options(self.fps)
        codec.thread_count = 1  # one core at most per source: the gateway has few
        self._codec_kbps = self.kbps
        log.debug("%s: H.264 encoder %dx%d at %d kbps", self.relay.name, width, height, self.kbps)
        return codec


class AudioEncoder:
    """Decoded audio in (any rate and layout), Opus packets of 20 ms out into `relay`, with in-band FEC."""

    def __init__(self, relay: PacketRelay, *, kbps: int) -> None:
        self.relay = relay
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.bit_rate = kbps * 1000
        self.codec.sample_rate = AUDIO_CLOCK
        self.codec.layout = "stereo"
        self.codec.format = "s16"
        self.codec.time_base = AUDIO_TIME_BASE
        # Expecting loss makes libopus spend bits on forward error correction: voice survives a weak link.
        self.codec.options = {"application": "voip", "fec": "1", "packet_loss": "10"}
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_CLOCK, frame_size=OPUS_FRAME)
        self.mapper = TimestampMapper(AUDIO_CLOCK)
        self.frames_in = 0
        self._samples = 0  # encoded so far: the source's clock, kept on the gateway's by the mapper

    def encode(self, frame: av.AudioFrame) -> None:
        self.frames_in += 1
        now = time.monotonic()
        for resampled in self.resampler.resample(frame):
            for packet in self.codec.encode(resampled):
                packet.pts = packet.dts = self.mapper.map(self._samples / AUDIO_CLOCK, now)
                packet.time_base = AUDIO_TIME_BASE
                self._samples += OPUS_FRAME
                self.relay.push(packet, False)
