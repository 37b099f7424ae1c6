"""A synthetic camera for tests and benchmarks: H.264 (Annex-B, baseline, ~1 s GOP) and Opus made with PyAV,
either written once to an MPEG-TS file or encoded live, frame by frame.

Every frame carries a barcode of its capture time (and a counter) in its top rows, so a receiver that decodes
it can measure the latency from capture to display on the same machine (`read_stamp`).
"""

from __future__ import annotations

import fractions
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

STAMP_BITS = 64  # 48 bits of capture time (Unix ms) + 16 bits of frame counter
LUMA_ON, LUMA_OFF = 220, 30


def stamp_block(width: int) -> int:
    return max(4, width // (STAMP_BITS + 8))


def write_stamp(luma: np.ndarray, capture_ms: int, counter: int) -> None:
    """Paint the stamp as a row of black/white blocks (robust to lossy compression)."""
    block = stamp_block(luma.shape[1])
    value = ((capture_ms & (2**48 - 1)) << 16) | (counter & 0xFFFF)
    for bit in range(STAMP_BITS):
        on = (value >> (STAMP_BITS - 1 - bit)) & 1
        luma[0:block * 2, bit * block:(bit + 1) * block] = LUMA_ON if on else LUMA_OFF


def read_stamp(luma: np.ndarray) -> tuple[int, int]:
    """(capture time in Unix ms, counter) from a decoded frame's luma plane."""
    block = stamp_block(luma.shape[1])
    value = 0
    for bit in range(STAMP_BITS):
        cell = luma[block // 2:block * 2 - block // 2, bit * block + block // 4:(bit + 1) * block - block // 4]
        value = (value << 1) | int(cell.mean() > (LUMA_ON + LUMA_OFF) / 2)
    return value >> 16, value & 0xFFFF


class FramePainter:
    """Frames with motion and texture (so H.264 spends a realistic bitrate), stamped with their capture time."""

    def __init__(self, width: int, height: int, seed: int = 7) -> None:
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        # A texture wider than the frame, scrolled a little each frame: motion the encoder must follow.
        self._texture = rng.integers(40, 200, size=(height, width * 2), dtype=np.uint8)

    def frame(self, index: int, capture_ms: int) -> av.VideoFrame:
        shift = (index * 3) % self.width
        luma = np.ascontiguousarray(self._texture[:, shift:shift + self.width])
        bar = (index * 5) % max(1, self.height - 40)
        luma[bar + 20:bar + 40, :] = 255
        write_stamp(luma, capture_ms, index)
        yuv = np.concatenate([luma, np.full((self.height // 2, self.width), 128, dtype=np.uint8)])
        return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def h264_options(fps: int, gop_s: float) -> dict[str, str]:
    gop = str(max(1, round(fps * gop_s)))
    return {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "g": gop, "keyint_min": gop,
            "sc_threshold": "0", "bf": "0"}


def tone(samples_done: int, count: int, hz: float = 440.0) -> av.AudioFrame:
    t = (np.arange(count) + samples_done) / 48000
    mono = (np.sin(2 * np.pi * hz * t) * 6000).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(np.repeat(mono, 2).reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = 48000
    frame.pts = samples_done
    frame.time_base = fractions.Fraction(1, 48000)
    return frame


def write_ts(path: Path, *, width: int = 320, height: int = 240, fps: int = 15, seconds: float = 4.0,
             kbps: int = 300, gop_s: float = 1.0, audio: bool = True) -> Path:
    """An MPEG-TS file: H.264 baseline (Annex-B, SPS/PPS at every keyframe) and, if `audio`, Opus."""
    out = av.open(str(path), "w", format="mpegts")
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.bit_rate = kbps * 1000
    video.options = h264_options(fps, gop_s)
    voice = None
    if audio:
        voice = out.add_stream("libopus", rate=48000)
        voice.layout = "stereo"
    painter = FramePainter(width, height)
    samples = 0
    for i in range(round(fps * seconds)):
        frame = painter.frame(i, 0)
        frame.pts = i
        for packet in video.encode(frame):
            out.mux(packet)
        if voice is not None:
            while samples < (i + 1) * 48000 // fps:
                for packet in voice.encode(tone(samples, 960)):
                    out.mux(packet)
                samples += 960
    for stream in (video, voice):
        if stream is not None:
            for packet in stream.encode(None):
                out.mux(packet)
    out.close()
    return path


@dataclass(frozen=True, slots=True)
class EncodedUnit:
    kind: str  # "video" | "audio"
    data: bytes  # an Annex-B access unit, or one Opus packet
    pts_s: float
    keyframe: bool


class LiveEncoder:
    """Encodes stamped frames in real time (paced by the wall clock): a live camera for latency measurements."""

    def __init__(self, *, width: int = 1280, height: int = 720, fps: int = 30, kbps: int = 2000,
                 gop_s: float = 1.0) -> None:
        self.fps = fps
        self.codec = av.CodecContext.create("libx264", "w")
        self.codec.width, self.codec.height, self.codec.pix_fmt = width, height, "yuv420p"
        self.codec.bit_rate = kbps * 1000
        self.codec.time_base = fractions.Fraction(1, fps)
        self.codec.framerate = fractions.Fraction(fps, 1)
        self.codec.options = h264_options(fps, gop_s)
        self.painter = FramePainter(width, height)

    def units(self) -> Iterator[EncodedUnit]:
        start = time.monotonic()
        index = 0
        while True:
            due = start + index / self.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            frame = self.painter.frame(index, time.time_ns() // 1_000_000)
            frame.pts = index
            for packet in self.codec.encode(frame):
                yield EncodedUnit("video", bytes(packet), index / self.fps, bool(packet.is_keyframe))
            index += 1
