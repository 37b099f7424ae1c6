"""Imaging attachments in the API: DICOM upload on a patient (multipart, streamed, checked, kept once by sha256),
the attachment's key tags, and the audited download of the original.

Thin handlers: the file work is `hq.imaging`, the tags `hq.dicom_tags`; the timeline page shows the uploads.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, imaging, openapi
from hq.appkeys import CONFIG, ENGINE
from hq.auth import Actor, Role, require
from hq.clock import now_ms
from hq.console.patient_api import (
    ERRORS,
    PATIENT_ID_PARAM,
    REGISTRARS,
    NotFound,
    audit_clinic,
    check_access,
    guarded,
    in_thread,
    json_error,
)
from hq.patient_timeline import imaging_json

routes = web.RouteTableDef()


# ---- imaging ------------------------------------------------------------------------------------
def _may_upload(conn: sa.Connection, actor: Actor, patient_id: int) -> tuple[int, str | None]:
    live = check_access(conn, actor, patient_id)
    return live, actor.clinic_id if actor.role is Role.CLINIC_STAFF else None


def _file(engine: sa.Engine, actor: Actor, patient_id: int, upload: imaging.Upload, tags: Any,
          store: imaging.AttachmentStore, clinic_id: str | None) -> dict[str, Any]:
    relative = store.keep(upload)
    at = now_ms()
    with engine.begin() as conn:
        live, staff_clinic = _may_upload(conn, actor, patient_id)
        filed = imaging.file_on_patient(conn, live, upload, tags, relative, clinic_id=staff_clinic or clinic_id,
                                        user_id=actor.user_id, now=at)
        if not filed.duplicate:
            audit.record(conn, actor, "imaging.upload", "imaging", filed.imaging_id, clinic_id=audit_clinic(actor),
                         detail={"patient_id": live, "sha256": upload.sha256, "size_bytes": upload.size_bytes,
                                 "sop_instance_uid": tags.sop_instance_uid, "modality": tags.modality})
        row = imaging.find(conn, filed.imaging_id)
        assert row is not None
        return {**imaging_json(row), "patient_id": live, "duplicate": filed.duplicate}


@routes.post("/api/v1/patients/{patient_id:\\d+}/imaging")
async def api_upload(request: web.Request) -> web.Response:
    actor = await require(request, *REGISTRARS)
    patient_id = int(request.match_info["patient_id"])
    section = request.app[CONFIG].records
    engine = request.app[ENGINE]

    def check() -> None:
        with engine.connect() as conn:
            _may_upload(conn, actor, patient_id)

    await guarded(request, check)  # before reading a byte of the body
    if request.content_length is not None and request.content_length > section.max_upload_bytes + 64 * 1024:
        return json_error(413, f"the upload is {request.content_length:,} bytes; at most "
                                f"{section.max_upload_bytes:,} are allowed ([records] max_upload_bytes)", "file")
    if not request.content_type.startswith("multipart/"):
        return json_error(400, "send the file as multipart/form-data, in a part named 'file'", "file")
    store = imaging.AttachmentStore(section.attachments_dir)
    try:
        upload = await imaging.receive(await request.multipart(), store, max_bytes=section.max_upload_bytes)
        try:
            tags = await in_thread(imaging.read_tags, upload.temp_path)
            clinic_id = upload.fields.get("clinic_id") or None
            if clinic_id is not None and not actor.may_see_clinic(clinic_id):
                raise imaging.ImagingError(403, f"you may not file imaging for clinic {clinic_id}", "clinic_id")
            result = await guarded(request, _file, engine, actor, patient_id, upload, tags, store, clinic_id)
        finally:
            upload.temp_path.unlink(missing_ok=True)
    except imaging.ImagingError as exc:
        return json_error(exc.status, str(exc), exc.field)
    except ValueError as exc:  # a malformed multipart body
        return json_error(400, f"the multipart body is malformed: {exc}", "file")
    return web.json_response(result, status=200 if result["duplicate"] else 201)


def _imaging_row(engine: sa.Engine, actor: Actor, imaging_id: int, action: str) -> dict[str, Any]:
    with engine.begin() as conn:
        row = imaging.find(conn, imaging_id)
        if row is None:
            raise NotFound(f"no imaging {imaging_id}")
        check_access(conn, actor, int(row["patient_id"]))
        audit.record(conn, actor, action, "imaging", imaging_id, clinic_id=audit_clinic(actor),
                     detail={"patient_id": row["patient_id"], "sha256": row["sha256"]})
        return row


@routes.get("/api/v1/imaging/{imaging_id:\\d+}")
async def api_imaging(request: web.Request) -> web.Response:
    actor = await require(request)
    row = await guarded(request, _imaging_row, request.app[ENGINE], actor, int(request.match_info["imaging_id"]),
                         "imaging.read")
    return web.json_response({**imaging_json(row), "patient_id": row["patient_id"]})


@routes.get("/api/v1/imaging/{imaging_id:\\d+}/file")
async def api_imaging_file(request: web.Request) -> web.StreamResponse:
    actor = await require(request)
    row = await guarded(request, _imaging_row, request.app[ENGINE], actor, int(request.match_info["imaging_id"]),
                         "imaging.download")
    store = imaging.AttachmentStore(request.app[CONFIG].records.attachments_dir)
    try:
        path = store.path(row["storage_path"])
    except imaging.ImagingError as exc:
        return json_error(exc.status, str(exc))
    if not path.is_file():
        return json_error(410, f"the file of imaging {row['id']} is missing from the attachment store "
                                f"({row['storage_path']}); restore it from the backup")
    name = (row["filename"] or f"{row['sop_instance_uid'] or row['sha256']}.dcm").replace('"', "")
    return web.FileResponse(path, headers={
        "Content-Type": "application/dicom", "Content-Disposition": f'attachment; filename="{name}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "ETag": f'"{row["sha256"]}"'})



# ---- OpenAPI ------------------------------------------------------------------------------------
_IMAGING = {"type": "object", "properties": {
    "imaging_id": {"type": "integer"}, "patient_id": {"type": "integer"}, "filename": {"type": ["string", "null"]},
    "modality": {"type": ["string", "null"]}, "study_date": {"type": ["string", "null"], "format": "date"},
    "study_description": {"type": ["string", "null"]}, "body_part": {"type": ["string", "null"]},
    "study_instance_uid": {"type": ["string", "null"]}, "series_instance_uid": {"type": ["string", "null"]},
    "sop_instance_uid": {"type": "string"}, "size_bytes": {"type": "integer"}, "sha256": {"type": "string"},
    "tags": {"type": "object", "description": "Key DICOM tags by keyword, as read at upload"},
    "download": {"type": "string"}, "duplicate": {"type": "boolean"}}}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/patients/{patient_id}/imaging": {"post": {
        "summary": "Upload a DICOM file (multipart/form-data, part 'file'; optional field 'clinic_id'); kept once by "
                   "sha256, its key tags read and shown on the timeline; audited",
        "parameters": [PATIENT_ID_PARAM],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}, "clinic_id": {"type": "string"}}}}}},
        "responses": {"201": openapi.ok(_IMAGING, "Filed"), "200": openapi.ok(_IMAGING, "Already filed"),
                      "400": openapi.ok(openapi.ERROR, "Not a (complete) DICOM file"),
                      "409": openapi.ok(openapi.ERROR, "The instance is filed on another patient"),
                      "413": openapi.ok(openapi.ERROR, "Larger than [records] max_upload_bytes"), **ERRORS}}},
    "/api/v1/imaging/{imaging_id}": {"get": {
        "summary": "An imaging attachment's key tags; audited",
        "parameters": [openapi.path_param("imaging_id", "The attachment", {"type": "integer"})],
        "responses": {"200": openapi.ok(_IMAGING), "404": openapi.ok(openapi.ERROR, "No such attachment"),
                      **ERRORS}}},
    "/api/v1/imaging/{imaging_id}/file": {"get": {
        "summary": "Download the original DICOM file; audited",
        "parameters": [openapi.path_param("imaging_id", "The attachment", {"type": "integer"})],
        "responses": {"200": {"description": "The file", "content": {"application/dicom": {"schema": {
            "type": "string", "format": "binary"}}}},
            "404": openapi.ok(openapi.ERROR, "No such attachment"),
            "410": openapi.ok(openapi.ERROR, "The file is missing from the store"), **ERRORS}}},
}
