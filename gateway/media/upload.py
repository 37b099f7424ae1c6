"""Uploads finished recordings to HQ over the gateway's MQTT connection, oldest first, when the link is free:
nothing waits in a higher outbox lane, no call is live (unless allowed), at most `media.upload_kbps`.

Resumable: each upload starts with an offer and HQ answers with how much it holds; chunks go on from there,
a few ahead of HQ's confirmations. HQ checks the SHA-256 at the end; a mismatch starts the upload again. A
recording is deleted only when HQ says it is complete. Not the recording (`gateway.media.recorder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway import wire
from gateway.media.recordings import Manifest, RecordingFiles
from gateway.mqttlink import Message, MqttError, MqttLink
from gateway.wire import RecordingChunk, RecordingProgress, RecordingState

log = logging.getLogger(__name__)

PROGRESS_TIMEOUT_S = 20.0  # no word from HQ for this long: offer again (HQ says where it is)
WINDOW_CHUNKS = 4  # chunks sent ahead of HQ's confirmation
BUSY_RETRY_S = 2.0
IDLE_CHECK_S = 30.0
MAX_CORRUPT = 3  # uploads that arrived corrupt this often stop until the next start, with an error


@dataclass(slots=True)
class UploadStats:
    bytes_sent: int = 0
    completed: int = 0
    restarts: int = 0  # uploads HQ found corrupt and that began again
    offers: int = 0


class RecordingUploader:
    def __init__(self, files: RecordingFiles, link: MqttLink, gateway_id: str, *, chunk_bytes: int, kbps: int,
                 may_send: Callable[[], bool]) -> None:
        self.files = files
        self.link = link
        self.gateway_id = gateway_id
        self.chunk_bytes = chunk_bytes
        self.kbps = kbps
        self.may_send = may_send
        self.stats = UploadStats()
        self.refused: dict[str, str] = {}  # recording id -> why (kept on disk; tried again at the next start)
        self._corrupt: dict[str, int] = {}
        self._progress: asyncio.Queue[RecordingProgress] = asyncio.Queue()
        self._wake = asyncio.Event()

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.recording_down_topic(self.gateway_id), 1)]

    def on_message(self, message: Message) -> None:
        if message.topic != wire.recording_down_topic(self.gateway_id):
            return
        try:
            self._progress.put_nowait(wire.decode_recording_progress(message.payload))
        except wire.WireError as exc:
            log.error("ignoring malformed recording progress from HQ: %s", exc)

    def wake(self) -> None:
        """A recording was finished: look for work now."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            waiting = [m for m in self.files.pending() if m.recording_id not in self.refused]
            if not waiting:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_CHECK_S):
                        await self._wake.wait()
                continue
            await self.link.wait_connected(timeout_s=3600)
            if not self.may_send():
                await asyncio.sleep(BUSY_RETRY_S)
                continue
            try:
                await self._upload(waiting[0])
            except MqttError as exc:
                log.info("recording upload paused: %s", exc)
                await asyncio.sleep(BUSY_RETRY_S)

    async def _upload(self, manifest: Manifest) -> None:
        recording_id = manifest.recording_id
        path = self.files.media(recording_id)
        await self.link.publish(wire.recording_up_topic(self.gateway_id), wire.encode_recording_offer(manifest.offer()),
                                qos=1)
        self.stats.offers += 1
        sent = confirmed = -1
        with path.open("rb") as f:
            while True:
                progress = await self._next_progress(recording_id)
                if progress is None:
                    return  # HQ said nothing: the run loop offers again
                if progress.state is RecordingState.COMPLETE:
                    self.files.delete(recording_id)
                    self.stats.completed += 1
                    log.info("recording %s is at HQ (%d bytes, SHA-256 checked); deleted here", recording_id,
                             manifest.size_bytes)
                    return
                if progress.state is RecordingState.REFUSED:
                    self.refused[recording_id] = progress.reason or "refused"
                    log.error("HQ refused recording %s: %s; it stays on this gateway", recording_id,
                              progress.reason)
                    return
                if progress.state is RecordingState.CORRUPT:
                    count = self._corrupt[recording_id] = self._corrupt.get(recording_id, 0) + 1
                    self.stats.restarts += 1
                    log.warning("recording %s arrived corrupt at HQ (%d time(s)); sending it again", recording_id,
                                count)
                    if count >= MAX_CORRUPT:
                        self.refused[recording_id] = "arrived corrupt repeatedly"
                        log.error("recording %s arrived corrupt %d times: uploads of it stop until the next start",
                                  recording_id, count)
                        return
                    sent = confirmed = 0
                else:
                    confirmed = progress.received_bytes
                    if sent < confirmed or progress.received_bytes < sent - WINDOW_CHUNKS * self.chunk_bytes:
                        sent = confirmed  # HQ holds more than we knew, or lost what we sent: go on from HQ's point
                    sent = max(sent, confirmed)
                while sent < manifest.size_bytes and sent - confirmed < WINDOW_CHUNKS * self.chunk_bytes:
                    if not self.may_send():
                        return  # a call started, or the outbox has work: carry on later from HQ's point
                    f.seek(sent)
                    data = f.read(self.chunk_bytes)
                    if not data:
                        raise OSError(f"recording {path} is shorter than its manifest says")
                    started = time.monotonic()
                    await self.link.publish(wire.recording_up_topic(self.gateway_id), wire.encode_recording_chunk(
                        RecordingChunk(recording_id, sent, manifest.size_bytes, data)), qos=1)
                    sent += len(data)
                    self.stats.bytes_sent += len(data)
                    if self.kbps:
                        await asyncio.sleep(max(0.0, len(data) * 8 / (self.kbps * 1000) - (time.monotonic() - started)))

    async def _next_progress(self, recording_id: str) -> RecordingProgress | None:
        deadline = time.monotonic() + PROGRESS_TIMEOUT_S
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    progress = await self._progress.get()
            except TimeoutError:
                return None
            if progress.recording_id == recording_id:
                return progress
