"""The recording of one call: the main camera's H.264 as the camera sends it (never re-encoded) and every voice
mixed into one AAC track, in a fragmented MP4 that stays playable up to its last fragment if the gateway dies.

The recorder is one more viewer of the relays (bounded, keyframe-gated like any other) and does its muxing,
Opus decoding, mixing and AAC encoding in a thread of its own: the event loop only hands packets over. Not the
decision to record (consent: `gateway.media.service`) nor the upload (`gateway.media.upload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError

from gateway.media import h264
from gateway.media.relay import PacketRelay, RelayedTrack
from gateway.media.timestamps import AUDIO_CLOCK, VIDEO_CLOCK

log = logging.getLogger(__name__)

SLOT_SAMPLES = 960  # 20 ms at 48 kHz: the mixer's unit of time
MIX_DELAY_SLOTS = 25  # a slot is mixed (and encoded) half a second after it: voices arriving late still count
QUEUE_ITEMS = 3000  # about 20 s of one camera and four voices; beyond, the recording drops (and counts) packets
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)


@dataclass(frozen=True, slots=True)
class _Video:
    data: bytes
    pts: int
    keyframe: bool


@dataclass(frozen=True, slots=True)
class _Voice:
    source: str
    data: bytes
    pts: int


class Mixer:
    """Voices into 20 ms slots on one timeline (sample times), summed with clipping. Pure numpy, no I/O."""

    def __init__(self, start_pts: int) -> None:
        self.start = start_pts
        self._slots: dict[int, np.ndarray] = {}
        self._next = 0  # the first slot not yet handed out
        self.late = 0  # samples that came after their slot was mixed

    def add(self, pts: int, samples: np.ndarray) -> None:
        """`samples`: interleaved stereo int16 starting at `pts` (48 kHz ticks on the shared clock)."""
        offset = pts - self.start
        if offset < 0:
            return
        frames = samples.reshape(-1, 2).astype(np.int32)
        done = 0
        while done < len(frames):
            slot, within = divmod(offset + done, SLOT_SAMPLES)
            take = min(SLOT_SAMPLES - within, len(frames) - done)
            if slot < self._next:
                self.late += take
            else:
                buffer = self._slots.get(slot)
                if buffer is None:
                    buffer = self._slots[slot] = np.zeros((SLOT_SAMPLES, 2), dtype=np.int32)
                buffer[within:within + take] += frames[done:done + take]
            done += take

    def ready(self, newest_pts: int, *, flush: bool = False) -> list[np.ndarray]:
        """The slots old enough to mix (all of them on `flush`), in order; silence where nobody spoke."""
        upto = max(self._slots, default=self._next - 1) + 1 if flush else (
            (newest_pts - self.start) // SLOT_SAMPLES - MIX_DELAY_SLOTS)
        out = []
        while self._next < upto:
            buffer = self._slots.pop(self._next, None)
            mixed = np.zeros((SLOT_SAMPLES, 2), dtype=np.int16) if buffer is None else np.clip(
                buffer, -32768, 32767).astype(np.int16)
            out.append(mixed)
            self._next += 1
        return out


@dataclass(frozen=True, slots=True)
class Written:
    path: Path
    started_ms: int
    ended_ms: int
    video_frames: int
    dropped: int


class Recorder:
    """`start()`, then `stop()` returns what was written. `voices()` says which voice relays to record now
    (called about once a second: participants come and go)."""

    def __init__(self, path: Path, video: PacketRelay, voices: Callable[[], dict[str, PacketRelay]]) -> None:
        self.path = path
        self.video = video
        self.voices = voices
        self.started_ms = 0
        self.dropped = 0
        self._queue: queue.Queue[_Video | _Voice | None] = queue.Queue(maxsize=QUEUE_ITEMS)
        self._thread: threading.Thread | None = None
        self._pumps: dict[str, tuple[RelayedTrack, asyncio.Task[None]]] = {}
        self._video_task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._result: Written | None = None
        self._error: BaseException | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.started_ms = time.time_ns() // 1_000_000
        self._thread = threading.Thread(target=self._write, name=f"recorder-{self.path.stem}", daemon=True)
        self._thread.start()
        track = self.video.subscribe()
        self._video_task = asyncio.create_task(self._pump_video(track))
        self._pumps["video"] = (track, self._video_task)
        self._sync_task = asyncio.create_task(self._follow_voices())

    def _put(self, item: _Video | _Voice) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1  # the writer fell behind (a stalled disk): lose packets, never stall the call

    async def _pump_video(self, track: RelayedTrack) -> None:
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                return
            data = bytes(packet)
            self._put(_Video(data, int(packet.pts or 0), h264.is_keyframe(data)))

    async def _pump_voice(self, source: str, track: RelayedTrack) -> None:
        while True:
            try:
                packet = await track.recv()
            except MediaStreamError:
                return
            self._put(_Voice(source, bytes(packet), int(packet.pts or 0)))

    async def _follow_voices(self) -> None:
        while True:
            wanted = self.voices()
            for source, relay in wanted.items():
                pump = self._pumps.get(source)
                if pump is None or pump[0].target is not relay:
                    if pump is not None:
                        pump[0].stop()
                        pump[1].cancel()
                    track = relay.subscribe()
                    self._pumps[source] = (track, asyncio.create_task(self._pump_voice(source, track)))
            for source in [s for s in self._pumps if s != "video" and s not in wanted]:
                track, task = self._pumps.pop(source)
                track.stop()
                task.cancel()
            await asyncio.sleep(1.0)

    async def stop(self) -> Written:
        for task in (self._sync_task,):
            if task is not None:
                task.cancel()
        for track, task in self._pumps.values():
            track.stop()
            task.cancel()
        self._pumps.clear()
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise RecorderError(f"recording {self.path.name} failed: {self._error}") from self._error
        assert self._result is not None
        return self._result

    # ---- the writer thread -----------------------------------------------------------------
    def _write(self) -> None:
        try:
            self._result = self._write_file()
        except BaseException as exc:  # reported to stop(), which raises it on the loop
            log.exception("recording %s failed", self.path.name)
            self._error = exc

    def _write_file(self) -> Written:
        container: Any = None
        video_stream: Any = None
        voice: Any = None
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_CLOCK)
        decoders: dict[str, Any] = {}
        mixer: Mixer | None = None
        start_video = start_audio = 0
        frames = 0
        newest_audio = 0
        audio_out = 0
        ended_ms = self.started_ms

        def encode(slots: list[np.ndarray]) -> None:
            nonlocal audio_out
            for slot in slots:
                frame = av.AudioFrame.from_ndarray(slot.reshape(1, -1), format="s16", layout="stereo")
                frame.sample_rate = AUDIO_CLOCK
                frame.pts = audio_out
                audio_out += SLOT_SAMPLES
                for resampled in resampler.resample(frame):
                    for packet in voice.encode(resampled):
                        container.mux(packet)

        while True:
            item = self._queue.get()
            if item is None:
                break
            if isinstance(item, _Video):
                if container is None:
                    if not item.keyframe:
                        continue  # a recording starts at a keyframe, like any viewer
                    container, video_stream, voice = self._open(item.data)
                    start_video = item.pts
                    start_audio = item.pts * AUDIO_CLOCK // VIDEO_CLOCK
                    mixer = Mixer(start_audio)
                packet = av.Packet(item.data)
                packet.pts = packet.dts = item.pts - start_video
                packet.time_base = VIDEO_TIME_BASE
                packet.stream = video_stream
                packet.is_keyframe = item.keyframe
                container.mux(packet)
                frames += 1
                ended_ms = time.time_ns() // 1_000_000
            elif mixer is not None:
                decoder = decoders.get(item.source)
                if decoder is None:
                    decoder = decoders[item.source] = av.CodecContext.create("libopus", "r")
                    decoder.sample_rate, decoder.layout, decoder.format = AUDIO_CLOCK, "stereo", "s16"
                with contextlib.suppress(av.FFmpegError):
                    for decoded in decoder.decode(av.Packet(item.data)):
                        mixer.add(item.pts, decoded.to_ndarray())
                newest_audio = max(newest_audio, item.pts)
                encode(mixer.ready(newest_audio))
        if container is None:
            raise RecorderError("no keyframe came from the camera: nothing was recorded")
        assert mixer is not None
        encode(mixer.ready(newest_audio, flush=True))
        for packet in voice.encode(None):
            container.mux(packet)
        container.close()
        return Written(self.path, self.started_ms, ended_ms, frames, self.dropped)

    def _open(self, keyframe: bytes) -> tuple[Any, Any, Any]:
        width, height = _dimensions(keyframe)
        container = av.open(str(self.path), "w", format="mp4", options=dict(FRAGMENTED_MP4))
        video_stream = container.add_stream("h264", rate=30)
        video_stream.width, video_stream.height = width, height
        video_stream.time_base = VIDEO_TIME_BASE
        voice = container.add_stream("aac", rate=AUDIO_CLOCK)
        voice.layout = "stereo"
        voice.bit_rate = 64_000
        return container, video_stream, voice


def _dimensions(keyframe: bytes) -> tuple[int, int]:
    decoder = av.CodecContext.create("h264", "r")
    try:
        for frame in decoder.decode(av.Packet(keyframe)):
            return frame.width, frame.height
        for frame in decoder.decode(None):
            return frame.width, frame.height
    except av.FFmpegError as exc:
        raise RecorderError(f"the camera's keyframe cannot be decoded: {exc}") from exc
    raise RecorderError("the camera's keyframe decoded to no picture")


class RecorderError(Exception):
    """A recording could not be written; the message says why."""
