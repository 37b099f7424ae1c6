"""Consultation recordings at HQ: receiving a gateway's upload (resumable: HQ says how much it holds, the gateway
goes on from there; the SHA-256 is checked at the end), storing it, listing a consultation's recordings
(`recordings_for`, for the consultation page and the patient's timeline) and serving them, each access written
to the audit log.

Not the recording itself (the gateway's `gateway.media.recorder`). The uploads arrive on a shared subscription:
with several HQ workers, [recordings] dir must be storage they share; the database row serialises the appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from gateway import wire
from gateway.mqttlink import Message, MqttError, MqttLink
from gateway.prometheus import Family
from gateway.wire import RecordingChunk, RecordingOffer, RecordingProgress, RecordingState
from hq import audit, openapi
from hq.appkeys import ENGINE, RECORDINGS
from hq.call_access import caller_of
from hq.clock import iso_from_ms, now_ms
from hq.config import RecordingsSection
from hq.gateway_events import EventContext, EventError
from hq.models import recordings

log = logging.getLogger(__name__)

RECORDING_EVENT = "RECORDING"  # the metric of the bulk-lane event a gateway sends when a recording is finished


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a recording's bytes are: `partial/` while they arrive, then by clinic and month."""

    root: Path

    def partial(self, recording_id: str) -> Path:
        return self.root / "partial" / f"{recording_id}.part"

    def final(self, clinic_id: str, started_ms: int, recording_id: str) -> str:
        month = (iso_from_ms(started_ms) or "0000-00")[:7]
        return f"{clinic_id}/{month}/{recording_id}.mp4"


class RecordingStore:
    def __init__(self, engine: sa.Engine, link: MqttLink, section: RecordingsSection) -> None:
        self.engine = engine
        self.link = link
        self.section = section
        self.files = Stored(section.dir)
        self.bytes_received = 0
        self.completed = 0
        self.corrupt = 0
        # One writer at a time on this worker: chunks of one upload come in order and must be appended so.
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.HQ_RECORDING_SUBSCRIPTION, 1)]

    def on_message(self, message: Message) -> None:
        if not message.topic.endswith("/up/recording"):
            return
        try:
            gateway_id = wire.gateway_of_topic(message.topic)
            item = wire.decode_recording_up(message.payload)
        except wire.WireError as exc:
            log.warning("rejected recording message on %s: %s", message.topic, exc)
            return
        task = asyncio.ensure_future(self._receive(gateway_id, item))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive(self, gateway_id: str, item: RecordingOffer | RecordingChunk) -> None:
        progress: RecordingProgress | None
        async with self._lock:
            try:
                if isinstance(item, RecordingOffer):
                    progress = await asyncio.to_thread(self.offered, gateway_id, item)
                else:
                    progress = await asyncio.to_thread(self.chunk, gateway_id, item)
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                log.error("recording %s from %s: not stored: %s", item.recording_id, gateway_id, exc)
                return
        if progress is None:
            return
        try:
            await self.link.publish(wire.recording_down_topic(gateway_id), wire.encode_recording_progress(progress),
                                    qos=1)
        except MqttError as exc:
            log.warning("recording %s: progress not sent to %s (it asks again): %s", item.recording_id, gateway_id,
                        exc)

    # ---- the upload (worker thread) ------------------------------------------------------
    def offered(self, gateway_id: str, offer: RecordingOffer) -> RecordingProgress:
        """A gateway asks how much of a recording HQ holds; the first offer makes its row."""
        with self.engine.begin() as conn:
            row = announce(conn, gateway_id, offer.recording_id, offer.consultation_id, offer.clinic_id,
                           offer.started_ms, offer.ended_ms, offer.size_bytes, offer.sha256, offer.mime,
                           offer.patient_id)
            if (row["gateway_id"], row["sha256"], row["size_bytes"]) != (gateway_id, offer.sha256, offer.size_bytes):
                return RecordingProgress(offer.recording_id, 0, RecordingState.REFUSED,
                                         "a recording with this id but other contents is already at HQ")
            if offer.size_bytes > self.section.max_bytes:
                conn.execute(recordings.update().where(recordings.c.id == row["id"]).values(state="refused"))
                return RecordingProgress(offer.recording_id, 0, RecordingState.REFUSED,
                                         f"{offer.size_bytes} bytes is over HQ's limit of {self.section.max_bytes}")
            if row["state"] == "complete":
                return RecordingProgress(offer.recording_id, row["size_bytes"], RecordingState.COMPLETE)
            received = self._held(row)
            if received != row["received_bytes"]:
                conn.execute(recordings.update().where(recordings.c.id == row["id"]).values(received_bytes=received))
            if received == row["size_bytes"]:
                return self._finish(conn, row)
            return RecordingProgress(offer.recording_id, received, RecordingState.PARTIAL)

    def _held(self, row: dict[str, Any]) -> int:
        """What the partial file really holds: after a crash the row may be ahead of the disk, or behind it."""
        path = self.files.partial(row["recording_id"])
        size = path.stat().st_size if path.exists() else 0
        if size > row["received_bytes"]:
            with path.open("r+b") as f:
                f.truncate(row["received_bytes"])
            size = row["received_bytes"]
        return size

    def chunk(self, gateway_id: str, chunk: RecordingChunk) -> RecordingProgress:
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(recordings).where(recordings.c.recording_id == chunk.recording_id)
                                 .with_for_update()).mappings().first()
            if found is None or found["gateway_id"] != gateway_id:
                return RecordingProgress(chunk.recording_id, 0, RecordingState.REFUSED,
                                         "offer the recording before sending its bytes")
            row = dict(found)
            if row["state"] == "complete":
                return RecordingProgress(chunk.recording_id, row["size_bytes"], RecordingState.COMPLETE)
            if row["state"] == "refused" or chunk.size_bytes != row["size_bytes"]:
                return RecordingProgress(chunk.recording_id, 0, RecordingState.REFUSED, "not as offered")
            if chunk.offset != row["received_bytes"]:
                # A chunk after a gap (a lost one, or a resend of what HQ has): say where to go on from.
                return RecordingProgress(chunk.recording_id, row["received_bytes"], RecordingState.PARTIAL)
            path = self.files.partial(chunk.recording_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("ab") as f:
                f.write(chunk.data)
                f.flush()
                os.fsync(f.fileno())
            received = chunk.offset + len(chunk.data)
            self.bytes_received += len(chunk.data)
            conn.execute(recordings.update().where(recordings.c.id == row["id"]).values(received_bytes=received))
            row["received_bytes"] = received
            if received < row["size_bytes"]:
                return RecordingProgress(chunk.recording_id, received, RecordingState.PARTIAL)
            return self._finish(conn, row)

    def _finish(self, conn: sa.Connection, row: dict[str, Any]) -> RecordingProgress:
        path = self.files.partial(row["recording_id"])
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                digest.update(block)
        if digest.hexdigest() != row["sha256"]:
            self.corrupt += 1
            log.error("recording %s: SHA-256 does not match what the gateway announced; dropped, to be sent again",
                      row["recording_id"])
            path.unlink(missing_ok=True)
            conn.execute(recordings.update().where(recordings.c.id == row["id"]).values(received_bytes=0))
            return RecordingProgress(row["recording_id"], 0, RecordingState.CORRUPT)
        relative = self.files.final(row["clinic_id"], row["started_ms"], row["recording_id"])
        target = self.section.dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        conn.execute(recordings.update().where(recordings.c.id == row["id"]).values(
            state="complete", storage_path=relative, completed_ms=now_ms()))
        self.completed += 1
        log.info("recording %s of consultation %s complete (%d bytes)", row["recording_id"],
                 row["consultation_public_id"], row["size_bytes"])
        return RecordingProgress(row["recording_id"], row["size_bytes"], RecordingState.COMPLETE)

    def metrics(self) -> list[Family]:
        return [
            Family.single("hq_recording_bytes_received_total", "counter", "Recording bytes stored by this worker",
                          self.bytes_received),
            Family.single("hq_recordings_completed_total", "counter", "Recordings received whole, SHA-256 checked",
                          self.completed),
            Family.single("hq_recordings_corrupt_total", "counter",
                          "Uploads whose SHA-256 did not match (sent again by the gateway)", self.corrupt),
        ]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def announce(conn: sa.Connection, gateway_id: str, recording_id: str, consultation_id: str, clinic_id: str,
             started_ms: int, ended_ms: int, size_bytes: int, sha256: str, mime: str,
             patient_ref: str | None) -> dict[str, Any]:
    """The recording's row, made if it is new (by its offer, or by the gateway's bulk-lane event)."""
    row = conn.execute(sa.select(recordings).where(recordings.c.recording_id == recording_id)).mappings().first()
    if row is None:
        conn.execute(recordings.insert().values(
            recording_id=recording_id, consultation_public_id=consultation_id, gateway_id=gateway_id,
            clinic_id=clinic_id, patient_ref=patient_ref, mime=mime, started_ms=started_ms, ended_ms=ended_ms,
            size_bytes=size_bytes, sha256=sha256, received_bytes=0, state="uploading", announced_ms=now_ms()))
        row = conn.execute(sa.select(recordings).where(recordings.c.recording_id == recording_id)).mappings().one()
    return dict(row)


def recording_event(ctx: EventContext, row: dict[str, Any]) -> None:
    """The gateway's "RECORDING" event (the bulk-lane entry announcing a finished recording), handled in the
    ingest transaction: the recording shows on its consultation before its bytes arrive."""
    extra = row.get("extra") or {}
    try:
        recording_id, consultation = str(extra["id"]), str(extra["consultation"])
        started, ended, size = int(extra["started_ms"]), int(extra["ended_ms"]), int(extra["size"])
        sha = str(extra["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(f"RECORDING event needs id, consultation, started_ms, ended_ms, size, sha256: {exc}") from exc
    if not wire.valid_id(recording_id, 100) or not wire.valid_id(consultation) or len(sha) != 64:
        raise EventError(f"RECORDING event has a malformed id, consultation or sha256 ({recording_id!r})")
    announce(ctx.conn, row["gateway_id"], recording_id, consultation, row["clinic_id"], started, ended, size, sha,
             str(extra.get("mime", "video/mp4")), row.get("patient_id"))


# ---- what the console and the timeline show ------------------------------------------------
def recording_json(row: dict[str, Any]) -> dict[str, Any]:
    complete = row["state"] == "complete"
    return {"recording_id": row["recording_id"], "consultation": row["consultation_public_id"],
            "gateway_id": row["gateway_id"], "clinic_id": row["clinic_id"], "state": row["state"],
            "started": iso_from_ms(row["started_ms"]), "ended": iso_from_ms(row["ended_ms"]),
            "duration_s": round((row["ended_ms"] - row["started_ms"]) / 1000, 1), "size_bytes": row["size_bytes"],
            "received_bytes": row["received_bytes"], "sha256": row["sha256"], "mime": row["mime"],
            "url": f"/api/v1/recordings/{row['recording_id']}/media" if complete else None}


def recordings_for(conn: sa.Connection, consultation_public_id: str) -> list[dict[str, Any]]:
    """A consultation's recordings, oldest first: for its page and for the patient's timeline."""
    rows = conn.execute(sa.select(recordings).where(recordings.c.consultation_public_id == consultation_public_id)
                        .order_by(recordings.c.started_ms)).mappings().all()
    return [recording_json(dict(r)) for r in rows]


routes = web.RouteTableDef()


@routes.get("/api/v1/consultations/{public_id}/recordings")
async def get_recordings(request: web.Request) -> web.Response:
    public_id = request.match_info["public_id"]
    await caller_of(request, public_id)

    def read() -> list[dict[str, Any]]:
        with request.app[ENGINE].connect() as conn:
            return recordings_for(conn, public_id)
    return web.json_response({"consultation": public_id, "recordings": await asyncio.to_thread(read)})


def _find(engine: sa.Engine, recording_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(recordings).where(recordings.c.recording_id == recording_id)).mappings().first()
    return None if row is None else dict(row)


async def _recording(request: web.Request) -> dict[str, Any]:
    """The recording asked for, if the caller may see its consultation's call (404 before 403: no probing)."""
    row = await asyncio.to_thread(_find, request.app[ENGINE], request.match_info["recording_id"])
    if row is None:
        raise web.HTTPNotFound(text='{"error": "there is no such recording"}', content_type="application/json")
    return row


@routes.get("/api/v1/recordings/{recording_id}")
async def get_recording(request: web.Request) -> web.Response:
    row = await _recording(request)
    await caller_of(request, row["consultation_public_id"])
    return web.json_response(recording_json(row))


@routes.get("/api/v1/recordings/{recording_id}/media")
async def get_recording_media(request: web.Request) -> web.StreamResponse:
    """The MP4 (range requests supported, for seeking in a <video>); every access is written to the audit log."""
    row = await _recording(request)
    caller = await caller_of(request, row["consultation_public_id"])
    store = request.app[RECORDINGS]
    if row["state"] != "complete" or row["storage_path"] is None:
        return web.json_response({"error": "the recording is not (yet) at HQ"}, status=404)
    path = store.section.dir / row["storage_path"]
    if not path.is_file():
        log.error("recording %s: its file %s is missing", row["recording_id"], path)
        return web.json_response({"error": "the recording's file is missing at HQ"}, status=410)
    await asyncio.to_thread(audit.record_now, request.app[ENGINE], caller.label, "recording.view", "recording",
                            row["recording_id"], clinic_id=row["clinic_id"],
                            detail={"consultation": row["consultation_public_id"],
                                    "range": request.headers.get("Range")})
    return web.FileResponse(path, headers={"Content-Type": row["mime"], "Cache-Control": "private, no-store",
                                           "Content-Disposition": f'inline; filename="{row["recording_id"]}.mp4"'})


_RECORDING = {
    "type": "object",
    "properties": {
        "recording_id": {"type": "string"}, "consultation": {"type": "string"}, "gateway_id": {"type": "string"},
        "clinic_id": {"type": "string"},
        "state": {"enum": ["uploading", "complete", "refused"],
                  "description": "uploading: the gateway is sending it (received_bytes of size_bytes so far)"},
        "started": openapi.TIME, "ended": openapi.TIME, "duration_s": {"type": "number"},
        "size_bytes": {"type": "integer"}, "received_bytes": {"type": "integer"}, "sha256": {"type": "string"},
        "mime": {"type": "string"},
        "url": {"type": ["string", "null"], "description": "The MP4, once complete; every access is audited"},
    },
}
_ACCESS = {"401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN,
           "404": openapi.ok(openapi.ERROR, "There is no such recording")}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/consultations/{public_id}/recordings": {"get": {
        "summary": "A consultation's recordings, oldest first (coordinators, admins, its experts)",
        "parameters": [openapi.path_param("public_id", "The consultation's public id")],
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "consultation": {"type": "string"}, "recordings": {"type": "array", "items": _RECORDING}}}),
            "401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN},
    }},
    "/api/v1/recordings/{recording_id}": {"get": {
        "summary": "One recording's metadata",
        "parameters": [openapi.path_param("recording_id", "The recording's id (made by the gateway)")],
        "responses": {"200": openapi.ok(_RECORDING), **_ACCESS},
    }},
    "/api/v1/recordings/{recording_id}/media": {"get": {
        "summary": "The recording (MP4; range requests for seeking). Every access is written to the audit log.",
        "parameters": [openapi.path_param("recording_id", "The recording's id (made by the gateway)")],
        "responses": {"200": {"description": "The MP4", "content": {"video/mp4": {}}},
                      "206": {"description": "The requested range", "content": {"video/mp4": {}}},
                      **_ACCESS, "410": openapi.ok(openapi.ERROR, "The recording's file is missing at HQ")},
    }},
}
