"""A participant's own microphone and camera as the gateway receives them (decoded by aiortc), encoded once
each for everyone else in the call: their voice to Opus, their picture to H.264.

Not the participant's connection (`gateway.media.peer`); only the media that comes from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.config import MediaSection
from gateway.media.encoder import AudioEncoder, VideoEncoder
from gateway.media.relay import PacketRelay
from gateway.media.timestamps import VIDEO_CLOCK, TimestampMapper

log = logging.getLogger(__name__)

PARTY_MAX_HEIGHT = 480  # a face on a screen: more would cost the gateway's CPU and the viewers' links


class PartyMedia:
    def __init__(self, peer_id: str, media: MediaSection) -> None:
        self.peer_id = peer_id
        self.voice = PacketRelay(f"{peer_id}/voice", "audio")
        self.video = PacketRelay(f"{peer_id}/video", "video")
        self.voice_encoder = AudioEncoder(self.voice, kbps=media.audio_kbps)
        self.video_encoder = VideoEncoder(self.video, kbps=min(media.video_kbps, 800), max_height=PARTY_MAX_HEIGHT)
        self.frames_in = {"audio": 0, "video": 0}
        self.last_frame_s: dict[str, float] = {}
        self._clock = TimestampMapper(VIDEO_CLOCK)
        self._tasks: list[asyncio.Task[None]] = [asyncio.create_task(self.video_encoder.run())]

    def sends(self, kind: str, within_s: float = 3.0) -> bool:
        at = self.last_frame_s.get(kind)
        return at is not None and time.monotonic() - at < within_s

    def attach(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.create_task(self._pump(track)))

    async def _pump(self, track: MediaStreamTrack) -> None:
        kind = track.kind
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            self.frames_in[kind] += 1
            self.last_frame_s[kind] = now
            if isinstance(frame, av.AudioFrame):
                if self.voice.viewers:  # other participants, or a recording
                    self.voice_encoder.encode(frame)
            elif isinstance(frame, av.VideoFrame) and self.video.viewers:
                self.video_encoder.submit(frame, self._clock.map(frame.time, now))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
