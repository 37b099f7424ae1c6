"""Imaging attachments: a DICOM file uploaded (multipart) is streamed to disk while hashed, refused if too large,
not DICOM or truncated, then kept once under its sha256 in the attachment store and filed on the patient.

I/O at the edges only: the tags are read by `hq.dicom_tags`; the caller checks access and audits.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pydicom
import pydicom.errors
import sqlalchemy as sa
from pydicom.dataelem import RawDataElement
from pydicom.filereader import data_element_generator

from hq.dicom_tags import DicomContentError, KeyTags, key_tags
from hq.models import imaging

CHUNK_BYTES = 256 * 1024
FIELD_MAX_BYTES = 4096  # the small form fields beside the file
DEFLATED = "1.2.840.10008.1.2.1.99"
UNDEFINED_LENGTH = 0xFFFFFFFF


class ImagingError(Exception):
    """An upload or download that cannot be done; `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class UploadPart(Protocol):
    """What aiohttp's BodyPartReader offers (a protocol, so that tests and the handler share one reader)."""

    name: str | None
    filename: str | None

    async def read_chunk(self, size: int = ...) -> bytes: ...


class UploadReader(Protocol):
    async def next(self) -> Any: ...


@dataclass(slots=True)
class Upload:
    temp_path: Path
    sha256: str
    size_bytes: int
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)


class AttachmentStore:
    """Files kept once under their sha256: <root>/ab/cd/abcd..., written atomically (rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def relative_path(self, sha256: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def path(self, relative: str) -> Path:
        resolved = (self.root / relative).resolve()
        if self.root.resolve() not in resolved.parents:
            raise ImagingError(500, f"stored path {relative!r} leaves the attachment store")
        return resolved

    def incoming(self) -> Path:
        folder = self.root / "incoming"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImagingError(507, f"cannot create the attachment store {folder}: {exc.strerror}") from exc
        return folder / f"{uuid.uuid4().hex}.part"

    def keep(self, upload: Upload) -> str:
        """Move the upload to its place (or drop it if that content is kept already); returns the relative path."""
        relative = self.relative_path(upload.sha256)
        target = self.root / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() and target.stat().st_size == upload.size_bytes:
                upload.temp_path.unlink(missing_ok=True)
            else:
                os.replace(upload.temp_path, target)
                _fsync_dir(target.parent)
        except OSError as exc:
            upload.temp_path.unlink(missing_ok=True)
            raise ImagingError(507, f"cannot store the file in {self.root}: {exc.strerror}") from exc
        return relative


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def receive(reader: UploadReader, store: AttachmentStore, *, max_bytes: int) -> Upload:
    """Read a multipart body: the part named "file" streamed to a temporary file (hashed, at most
    `max_bytes`), other parts as small text fields. Raises ImagingError (400, 413) and leaves nothing behind."""
    upload: Upload | None = None
    fields: dict[str, str] = {}
    try:
        while (part := await reader.next()) is not None:
            if part.name == "file":
                if upload is not None:
                    raise ImagingError(400, "one file per upload: the form has two 'file' parts", "file")
                upload = await _stream(part, store, max_bytes)
            elif part.name:
                value = await _small_field(part)
                fields[part.name] = value
    except BaseException:
        if upload is not None:
            upload.temp_path.unlink(missing_ok=True)
        raise
    if upload is None:
        raise ImagingError(400, "no file: send the DICOM file as the multipart part named 'file'", "file")
    upload.fields = fields
    return upload


async def _small_field(part: UploadPart) -> str:
    data = b""
    while chunk := await part.read_chunk(FIELD_MAX_BYTES):
        data += chunk
        if len(data) > FIELD_MAX_BYTES:
            raise ImagingError(400, f"form field {part.name!r} is longer than {FIELD_MAX_BYTES} bytes", part.name)
    return data.decode("utf-8", errors="replace").strip()


async def _stream(part: UploadPart, store: AttachmentStore, max_bytes: int) -> Upload:
    path = store.incoming()
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "wb") as out:
            while chunk := await part.read_chunk(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise ImagingError(413, f"the file is larger than the {max_bytes:,} bytes allowed "
                                            "([records] max_upload_bytes)", "file")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise ImagingError(400, "the file is empty", "file")
    filename = os.path.basename(part.filename or "")[:300] or None
    return Upload(path, digest.hexdigest(), size, filename)


def read_tags(path: Path) -> KeyTags:
    """The key tags of a complete DICOM file (sync: run in a thread). ImagingError 400 for anything else."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except pydicom.errors.InvalidDicomError:
        raise ImagingError(400, "not a DICOM file: it has no 'DICM' file header (a DICOM Part 10 file starts with "
                                "a 128-byte preamble and 'DICM')", "file") from None
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError, EOFError) as exc:
        raise ImagingError(400, f"not a readable DICOM file: {exc}", "file") from None
    _check_complete(path, ds)
    try:
        return key_tags(ds)
    except DicomContentError as exc:
        raise ImagingError(400, f"unusable DICOM file: {exc}", "file") from None


def _check_complete(path: Path, ds: pydicom.Dataset) -> None:
    """Every top-level element's value lies within the file: a file cut short in transfer is refused (pydicom
    itself reads a truncated file without complaint)."""
    meta = ds.file_meta
    group_length = meta.get("FileMetaInformationGroupLength")
    transfer = meta.get("TransferSyntaxUID")
    if group_length is None or transfer is None or str(transfer) == DEFLATED:
        return
    size = path.stat().st_size
    start = 128 + 4 + 12 + int(group_length)  # preamble, "DICM", the group length element, the rest of group 2
    try:
        with open(path, "rb") as fp:
            fp.seek(start)
            for raw in data_element_generator(fp, transfer.is_implicit_VR, transfer.is_little_endian,
                                              defer_size=1024):
                if not isinstance(raw, RawDataElement):
                    continue
                if raw.length != UNDEFINED_LENGTH and raw.value_tell + raw.length > size:
                    raise ImagingError(400, f"the DICOM file is truncated: element {raw.tag} needs "
                                            f"{raw.length} bytes at offset {raw.value_tell}, the file has "
                                            f"{size} bytes", "file")
    except ImagingError:
        raise
    except (OSError, ValueError, struct.error, EOFError, KeyError) as exc:
        raise ImagingError(400, f"the DICOM file is malformed or truncated: {exc}", "file") from None


@dataclass(frozen=True, slots=True)
class Filed:
    imaging_id: int
    duplicate: bool  # the same file was already filed on this patient


def file_on_patient(conn: sa.Connection, patient_id: int, upload: Upload, tags: KeyTags, relative_path: str, *,
                    clinic_id: str | None, user_id: int | None, now: int) -> Filed:
    """Record the kept file on the patient (once). ImagingError 409 if the instance is filed on another patient."""
    i = imaging
    same = conn.execute(sa.select(i.c.id, i.c.patient_id).where(
        sa.or_(i.c.sop_instance_uid == tags.sop_instance_uid, sa.and_(i.c.patient_id == patient_id,
                                                                       i.c.sha256 == upload.sha256)))).first()
    if same is not None:
        if int(same.patient_id) == patient_id:
            return Filed(int(same.id), True)
        raise ImagingError(409, f"this DICOM instance (SOP Instance UID {tags.sop_instance_uid}) is already filed "
                                f"on another patient (imaging {same.id}); file it once, on the right patient", "file")
    result = conn.execute(i.insert().values(
        patient_id=patient_id, clinic_id=clinic_id, sha256=upload.sha256, size_bytes=upload.size_bytes,
        storage_path=relative_path, filename=upload.filename, modality=tags.modality,
        study_instance_uid=tags.study_instance_uid, series_instance_uid=tags.series_instance_uid,
        sop_instance_uid=tags.sop_instance_uid, study_date=tags.study_date, study_description=tags.study_description,
        body_part=tags.body_part, tags=tags.shown, uploaded_by_user_id=user_id, uploaded_ms=now))
    return Filed(int(result.inserted_primary_key[0]), False)  # type: ignore[index]


def find(conn: sa.Connection, imaging_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(imaging).where(imaging.c.id == imaging_id)).mappings().first()
    return None if row is None else dict(row)

