"""The recordings waiting on the gateway's disk for their upload: each an MP4 and, once finished, a manifest
(JSON) beside it; bounded by `media.recordings_quota_bytes`.

Files only: the recorder writes the MP4s, the uploader sends and deletes them. A recording the gateway died
while writing (an MP4 without manifest) is finished at the next start: fragmented, it plays up to its last
fragment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway import wire

log = logging.getLogger(__name__)

MIME = "video/mp4"


@dataclass(frozen=True, slots=True)
class Manifest:
    recording_id: str
    consultation_id: str
    clinic_id: str
    started_ms: int
    ended_ms: int
    size_bytes: int
    sha256: str
    mime: str = MIME
    patient_id: str | None = None

    def offer(self) -> wire.RecordingOffer:
        return wire.RecordingOffer(self.recording_id, self.consultation_id, self.clinic_id, self.started_ms,
                                   self.ended_ms, self.size_bytes, self.sha256, self.mime, self.patient_id)

    def event_extra(self) -> dict[str, object]:
        """The body of the bulk-lane event that announces the recording to HQ."""
        return {"id": self.recording_id, "consultation": self.consultation_id, "started_ms": self.started_ms,
                "ended_ms": self.ended_ms, "size": self.size_bytes, "sha256": self.sha256, "mime": self.mime}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


class RecordingFiles:
    def __init__(self, directory: Path, quota_bytes: int) -> None:
        self.dir = directory
        self.quota_bytes = quota_bytes

    def media(self, recording_id: str) -> Path:
        return self.dir / f"{recording_id}.mp4"

    def _manifest_path(self, recording_id: str) -> Path:
        return self.dir / f"{recording_id}.json"

    def used_bytes(self) -> int:
        if not self.dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())

    def has_room(self) -> bool:
        return self.used_bytes() < self.quota_bytes

    def _begun_path(self, recording_id: str) -> Path:
        return self.dir / f"{recording_id}.begun"

    def begin(self, recording_id: str, consultation_id: str, clinic_id: str, started_ms: int,
              patient_id: str | None = None) -> Path:
        """Note what a new recording is of (so that one cut short by a crash can still be finished); returns
        the path of its MP4."""
        self.dir.mkdir(parents=True, exist_ok=True)
        note = {"consultation_id": consultation_id, "clinic_id": clinic_id, "started_ms": started_ms,
                "patient_id": patient_id}
        _write_atomically(self._begun_path(recording_id), json.dumps(note))
        return self.media(recording_id)

    def finish(self, recording_id: str, ended_ms: int) -> Manifest:
        """Measure and hash the finished MP4 and write its manifest (atomically: a manifest means finished)."""
        begun = json.loads(self._begun_path(recording_id).read_text(encoding="utf-8"))
        path = self.media(recording_id)
        manifest = Manifest(recording_id, begun["consultation_id"], begun["clinic_id"], begun["started_ms"],
                            ended_ms, path.stat().st_size, file_sha256(path), MIME, begun.get("patient_id"))
        _write_atomically(self._manifest_path(recording_id), json.dumps(asdict(manifest)))
        self._begun_path(recording_id).unlink(missing_ok=True)
        return manifest

    def pending(self) -> list[Manifest]:
        """Finished recordings not yet confirmed by HQ, oldest first."""
        found = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                found.append(Manifest(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                log.error("recording manifest %s is unreadable (%s); its recording stays on disk", path, exc)
        return sorted(found, key=lambda m: m.started_ms)

    def orphans(self) -> list[str]:
        """Recordings whose writing never finished (the gateway stopped meanwhile)."""
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.begun")
                      if self.media(p.stem).exists() and not self._manifest_path(p.stem).exists())

    def finish_orphans(self) -> list[Manifest]:
        finished = []
        for recording_id in self.orphans():
            ended_ms = int(self.media(recording_id).stat().st_mtime * 1000)
            try:
                finished.append(self.finish(recording_id, ended_ms))
            except (OSError, ValueError, KeyError) as exc:
                log.error("recording %s cut short by a stop cannot be finished: %s", recording_id, exc)
                continue
            log.warning("recording %s was cut short by a stop; kept up to its last fragment", recording_id)
        return finished

    def delete(self, recording_id: str) -> None:
        for path in (self._manifest_path(recording_id), self._begun_path(recording_id), self.media(recording_id)):
            path.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
