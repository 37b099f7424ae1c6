"""Patient records in the console and the JSON API: search, registration, a patient's timeline (live vitals,
days of readings, visits, imaging, consultations), imaging upload and download, and merging duplicates.
Every page has its JSON twin under /api/v1 (`OPENAPI_PATHS`); every read and change is audited.

Thin handlers: the rules are in `hq.records`, `hq.patient_search`, `hq.patient_merge`, `hq.imaging`; markup in
`hq.console.patient_pages`. Work on the database runs in a thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from hq import audit, imaging, openapi, patient_merge, patient_search, queries, records
from hq.appkeys import CONFIG, ENGINE
from hq.auth import Actor, Role, forbidden, require
from hq.clock import iso_from_ms, now_ms
from hq.console import html, patient_pages
from hq.models import clinics, consultations, observations, visits
from hq.models import imaging as imaging_table
from hq.patient_matching import PatientDataError
from hq.patient_timeline import DAY_MS, imaging_json, snapshot
from hq.query_params import ParamError, parse_instant
from hq.representations import observation_json

routes = web.RouteTableDef()
T = TypeVar("T")

REGISTRARS = (Role.COORDINATOR, Role.CLINIC_STAFF)  # register patients, upload imaging (admin implied)
MERGERS = (Role.COORDINATOR,)  # merge and undo: chain-wide decisions (admin implied)
SEARCH_MAX_CHARS = 200


class NotFound(Exception):
    pass


class Denied(Exception):
    pass


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def _json_error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


def _not_found(request: web.Request, message: str) -> web.HTTPException:
    if request.path.startswith("/api/"):
        return web.HTTPNotFound(text=f'{{"error": "{message}"}}', content_type="application/json")
    return web.HTTPNotFound(text=message)


async def _guarded(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in a thread; NotFound -> 404, Denied -> 403, naming what was refused."""
    try:
        return await _in_thread(fn, *args)
    except NotFound as exc:
        raise _not_found(request, str(exc)) from None
    except Denied as exc:
        raise forbidden(request, str(exc)) from None


def _audit_clinic(actor: Actor) -> str | None:
    return None if actor.sees_all_clinics else actor.clinic_id


def _check_access(conn: sa.Connection, actor: Actor, patient_id: int) -> int:
    """The live record id of `patient_id`, if the actor may see it."""
    live = records.resolve(conn, patient_id)
    if live is None:
        raise NotFound(f"no patient {patient_id}")
    if not records.may_see_patient(conn, actor, live):
        raise Denied(f"you may not see patient {patient_id}")
    return live


# ---- representations ---------------------------------------------------------------------------
def patient_json(row: Mapping[str, Any], identifiers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "patient_id": row["id"], "name": row["name"], "family_name": row["family_name"],
        "given_name": row["given_name"], "alt_name": row["alt_name"], "sex": row["sex"],
        "birth_date": None if row["birth_date"] is None else row["birth_date"].isoformat(),
        "national_id": row["national_id"], "phone": row["phone"], "origin": row["origin"],
        "merged_into_id": row["merged_into_id"], "created": iso_from_ms(row["created_ms"]),
        "updated": iso_from_ms(row["updated_ms"]),
        "identifiers": [{"clinic_id": i["clinic_id"], "clinic": i.get("clinic_name") or i.get("clinic"),
                         "mrn": i["mrn"]} for i in identifiers],
        "link": f"/patients/{row['id']}", "fhir": f"/api/v1/fhir/Patient/{row['id']}"}


def _merge_json(m: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": m["id"], "survivor_id": m["survivor_id"], "merged_id": m["merged_id"],
            "merged_name": m.get("merged_name"), "reason": m["reason"], "at": iso_from_ms(m["at_ms"]),
            "undone": iso_from_ms(m["undone_ms"]), "moved": m["moved"]}


# ---- search --------------------------------------------------------------------------------------
def _search(engine: sa.Engine, actor: Actor, query: str, limit: int) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        hits = patient_search.find(conn, query, actor=actor, limit=limit)
        rows = patient_search.describe(conn, hits)
        audit.record(conn, actor, "patient.search", "patient", None, clinic_id=_audit_clinic(actor),
                     detail={"query": query, "hits": len(rows)})
    return [{**patient_json(r, r["identifiers"]), "matched": r["matched"]} for r in rows]


def _query(request: web.Request) -> str:
    query = request.query.get("q", "").strip()
    if len(query) > SEARCH_MAX_CHARS:
        raise ParamError("q", f"the query is {len(query)} characters long", f"at most {SEARCH_MAX_CHARS}")
    return query


@routes.get("/api/v1/patients")
async def api_search(request: web.Request) -> web.Response:
    actor = await require(request)
    query = _query(request)
    limit = request.app[CONFIG].records.search_results
    if "limit" in request.query:
        try:
            limit = max(1, min(limit, int(request.query["limit"])))
        except ValueError:
            raise ParamError("limit", f"limit {request.query['limit']!r} is not a number", "an integer") from None
    rows = await _in_thread(_search, request.app[ENGINE], actor, query, limit) if query else []
    return web.json_response({"query": query, "patients": rows})


def _clinic_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(clinics.c.id).order_by(clinics.c.id)).scalars())


@routes.get("/patients")
async def search_page(request: web.Request) -> web.Response:
    actor = await require(request)
    query = _query(request)
    results = await _in_thread(_search, request.app[ENGINE], actor, query,
                               request.app[CONFIG].records.search_results) if query else None
    may_register = actor.role in (Role.ADMIN, *REGISTRARS)
    choice = await _in_thread(_clinic_ids, request.app[ENGINE]) if actor.sees_all_clinics else \
        [actor.clinic_id or ""]
    return html.response(patient_pages.search_page(actor, query, results, may_register=may_register,
                                                   may_merge=actor.role in (Role.ADMIN, *MERGERS),
                                                   clinic_choice=choice))


# ---- registration -------------------------------------------------------------------------------
REGISTER_FIELDS = ("clinic_id", "mrn", "national_id", "name", "family_name", "given_name", "alt_name", "sex",
                   "birth_date", "phone")


def _register(engine: sa.Engine, actor: Actor, fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(REGISTER_FIELDS) - {"csrf_token"})
    if unknown:
        raise PatientDataError(unknown[0], f"unknown field; expected some of {', '.join(REGISTER_FIELDS)}")
    values = {k: (str(v).strip() or None) if v is not None else None for k, v in fields.items()
              if k in REGISTER_FIELDS}
    for key, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise PatientDataError(key, f"must be a string, not {type(value).__name__}")
    clinic_id = values.get("clinic_id")
    if actor.role is Role.CLINIC_STAFF:
        if clinic_id not in (None, actor.clinic_id):
            raise Denied(f"clinic staff register patients of their own clinic ({actor.clinic_id}) only")
        clinic_id = actor.clinic_id
    at = now_ms()
    with engine.begin() as conn:
        demographics = records.clean_demographics(
            name=values.get("name"), family_name=values.get("family_name"), given_name=values.get("given_name"),
            alt_name=values.get("alt_name"), sex=values.get("sex"), birth_date=values.get("birth_date"),
            national_id=values.get("national_id"), phone=values.get("phone"),
            today=dt.datetime.fromtimestamp(at / 1000, dt.UTC).date())
        mrn = values.get("mrn")
        result = records.register(conn, clinic_id if mrn else None, mrn, demographics, origin="console", now=at)
        audit.record(conn, actor, "patient.register", "patient", result.patient_id, clinic_id=clinic_id,
                     detail={"outcome": result.outcome, "clinic_id": clinic_id, "mrn": mrn,
                             "duplicates": [d.other_id for d in result.duplicates]})
        row = records.find_patient(conn, result.patient_id)
        assert row is not None
        return {"patient": patient_json(row, records.identifiers_of(conn, result.patient_id)),
                "outcome": result.outcome,
                "possible_duplicates": [{"patient_id": d.other_id, "reason": d.reason} for d in result.duplicates]}


@routes.post("/api/v1/patients")
async def api_register(request: web.Request) -> web.Response:
    actor = await require(request, *REGISTRARS)
    try:
        body = await request.json()
    except ValueError:
        return _json_error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _json_error(400, "the body must be a JSON object")
    try:
        result = await _guarded(request, _register, request.app[ENGINE], actor, body)
    except PatientDataError as exc:
        return _json_error(400, str(exc), exc.field)
    return web.json_response(result, status=201 if result["outcome"].startswith("created") else 200)


@routes.post("/patients")
async def register_form(request: web.Request) -> web.Response:
    actor = await require(request, *REGISTRARS)
    form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        result = await _guarded(request, _register, request.app[ENGINE], actor, form)
    except PatientDataError as exc:
        choice = await _in_thread(_clinic_ids, request.app[ENGINE]) if actor.sees_all_clinics else \
            [actor.clinic_id or ""]
        page = patient_pages.search_page(actor, "", None, may_register=True,
                                         may_merge=actor.role in (Role.ADMIN, *MERGERS), error=str(exc), form=form,
                                         clinic_choice=choice)
        return html.response(page, status=400)
    raise web.HTTPSeeOther(f"/patients/{result['patient']['patient_id']}")


# ---- one patient --------------------------------------------------------------------------------
def _patient(engine: sa.Engine, actor: Actor, patient_id: int) -> dict[str, Any]:
    with engine.begin() as conn:
        live = _check_access(conn, actor, patient_id)
        row = records.find_patient(conn, live)
        assert row is not None
        doc = patient_json(row, records.identifiers_of(conn, live))
        doc["merges"] = [_merge_json(m) for m in patient_merge.merges_of(conn, live)]
        doc["requested_id"] = patient_id
        audit.record(conn, actor, "patient.read", "patient", live, clinic_id=_audit_clinic(actor))
        return doc


@routes.get("/api/v1/patients/{patient_id:\\d+}")
async def api_patient(request: web.Request) -> web.Response:
    actor = await require(request)
    doc = await _guarded(request, _patient, request.app[ENGINE], actor, int(request.match_info["patient_id"]))
    return web.json_response(doc)


def _window(request: web.Request) -> tuple[int, int]:
    section = request.app[CONFIG].records
    asked = parse_instant(request.query, "until") if request.query.get("until") else None
    until = now_ms() + 60_000 if asked is None else asked
    days = section.timeline_days
    if "days" in request.query:
        try:
            days = int(request.query["days"])
        except ValueError:
            raise ParamError("days", f"days {request.query['days']!r} is not a number", "1-366") from None
        if not 1 <= days <= 366:
            raise ParamError("days", f"days {days} is out of range", "1-366")
    return until - days * DAY_MS, until


def _timeline(engine: sa.Engine, actor: Actor, patient_id: int, since_ms: int, until_ms: int) -> dict[str, Any]:
    with engine.begin() as conn:
        live = _check_access(conn, actor, patient_id)
        audit.record(conn, actor, "patient.timeline.read", "patient", live, clinic_id=_audit_clinic(actor),
                     detail={"since": iso_from_ms(since_ms), "until": iso_from_ms(until_ms)})
    with snapshot(engine) as conn:
        row = records.find_patient(conn, live)
        assert row is not None
        doc = patient_json(row, records.identifiers_of(conn, live))
        doc["merges"] = [_merge_json(m) for m in patient_merge.merges_of(conn, live)]
        doc["timeline"] = records.timeline(conn, live, since_ms=since_ms, until_ms=until_ms).to_json()
        return doc


@routes.get("/api/v1/patients/{patient_id:\\d+}/timeline")
async def api_timeline(request: web.Request) -> web.Response:
    actor = await require(request)
    since_ms, until_ms = _window(request)
    doc = await _guarded(request, _timeline, request.app[ENGINE], actor, int(request.match_info["patient_id"]),
                         since_ms, until_ms)
    return web.json_response(doc)


def _latest_vitals(engine: sa.Engine, doc: Mapping[str, Any], actor: Actor) -> list[tuple[dict[str, Any],
                                                                                          list[dict[str, Any]]]]:
    out = []
    for key in doc["identifiers"]:
        if not actor.may_see_clinic(key["clinic_id"]) and actor.role is Role.CLINIC_STAFF:
            continue  # other clinics' readings stay on the timeline; live tiles are the clinic's own
        vitals = [observation_json(v) for v in queries.latest_vitals(engine, key["mrn"], key["clinic_id"])]
        out.append((key, vitals))
    return out


@routes.get("/patients/{patient_id:\\d+}")
async def timeline_page(request: web.Request) -> web.Response:
    actor = await require(request)
    asked = int(request.match_info["patient_id"])
    since_ms, until_ms = _window(request)
    engine = request.app[ENGINE]
    doc = await _guarded(request, _timeline, engine, actor, asked, since_ms, until_ms)
    if doc["patient_id"] != asked:
        raise web.HTTPSeeOther(f"/patients/{doc['patient_id']}?merged_from={asked}")
    vitals = await _in_thread(_latest_vitals, engine, doc, actor)
    config = request.app[CONFIG]
    trend_since = iso_from_ms(now_ms() - config.console.trend_window_s * 1000) or ""
    days = (until_ms - since_ms) // DAY_MS
    earlier = f"/patients/{asked}?{urlencode({'until': iso_from_ms(since_ms), 'days': days})}"
    merged_from = request.query.get("merged_from")
    page = patient_pages.timeline_page(
        actor, doc, doc["timeline"], vitals, trend_since=trend_since, live=actor.role is not Role.EXPERT,
        earlier=earlier, may_upload=actor.role in (Role.ADMIN, *REGISTRARS),
        may_merge=actor.role in (Role.ADMIN, *MERGERS), merges=doc["merges"],
        merged_from=int(merged_from) if merged_from and merged_from.isdigit() else None,
        upload_limit=config.records.max_upload_bytes)
    return html.response(page)


def _lookup(engine: sa.Engine, actor: Actor, clinic_id: str, mrn: str) -> int:
    """The patient of a device's patient id at a clinic; a record is made on the spot when readings carry the
    number but the rollup has not got to it yet (never for a number no reading carries)."""
    with engine.begin() as conn:
        found = records.patient_for_mrn(conn, clinic_id, mrn)
        if found is None:
            o = observations
            seen = conn.execute(sa.select(o.c.seq).where(o.c.patient_id == mrn, o.c.clinic_id == clinic_id)
                                .limit(1)).first()
            if seen is None:
                raise NotFound(f"no patient with record number {mrn} at {clinic_id}")
            found, created = records.provisional_patient(conn, clinic_id, mrn)
            if created:
                audit.record(conn, "system", "patient.register", "patient", found, clinic_id=clinic_id,
                             detail={"origin": "device", "mrn": mrn, "via": "lookup"})
    with engine.connect() as conn:
        _check_access(conn, actor, found)
    return found


def _lookup_params(request: web.Request) -> tuple[str, str]:
    clinic_id, mrn = request.query.get("clinic_id", "").strip(), request.query.get("mrn", "").strip()
    for name, value in (("clinic_id", clinic_id), ("mrn", mrn)):
        if not value:
            raise ParamError(name, f"{name} is missing", "the clinic and the record number (a device's patient id)")
    return clinic_id, mrn


@routes.get("/api/v1/patients/lookup")
async def api_lookup(request: web.Request) -> web.Response:
    actor = await require(request)
    clinic_id, mrn = _lookup_params(request)
    pid = await _guarded(request, _lookup, request.app[ENGINE], actor, clinic_id, mrn)
    return web.json_response({"patient_id": pid, "link": f"/patients/{pid}"})


@routes.get("/patients/lookup")
async def lookup_page(request: web.Request) -> web.Response:
    actor = await require(request)
    clinic_id, mrn = _lookup_params(request)
    pid = await _guarded(request, _lookup, request.app[ENGINE], actor, clinic_id, mrn)
    raise web.HTTPSeeOther(f"/patients/{pid}")


# ---- imaging ------------------------------------------------------------------------------------
def _may_upload(conn: sa.Connection, actor: Actor, patient_id: int) -> tuple[int, str | None]:
    live = _check_access(conn, actor, patient_id)
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
            audit.record(conn, actor, "imaging.upload", "imaging", filed.imaging_id, clinic_id=_audit_clinic(actor),
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

    await _guarded(request, check)  # before reading a byte of the body
    if request.content_length is not None and request.content_length > section.max_upload_bytes + 64 * 1024:
        return _json_error(413, f"the upload is {request.content_length:,} bytes; at most "
                                f"{section.max_upload_bytes:,} are allowed ([records] max_upload_bytes)", "file")
    if not request.content_type.startswith("multipart/"):
        return _json_error(400, "send the file as multipart/form-data, in a part named 'file'", "file")
    store = imaging.AttachmentStore(section.attachments_dir)
    try:
        upload = await imaging.receive(await request.multipart(), store, max_bytes=section.max_upload_bytes)
        try:
            tags = await _in_thread(imaging.read_tags, upload.temp_path)
            clinic_id = upload.fields.get("clinic_id") or None
            if clinic_id is not None and not actor.may_see_clinic(clinic_id):
                raise imaging.ImagingError(403, f"you may not file imaging for clinic {clinic_id}", "clinic_id")
            result = await _guarded(request, _file, engine, actor, patient_id, upload, tags, store, clinic_id)
        finally:
            upload.temp_path.unlink(missing_ok=True)
    except imaging.ImagingError as exc:
        return _json_error(exc.status, str(exc), exc.field)
    except ValueError as exc:  # a malformed multipart body
        return _json_error(400, f"the multipart body is malformed: {exc}", "file")
    return web.json_response(result, status=200 if result["duplicate"] else 201)


def _imaging_row(engine: sa.Engine, actor: Actor, imaging_id: int, action: str) -> dict[str, Any]:
    with engine.begin() as conn:
        row = imaging.find(conn, imaging_id)
        if row is None:
            raise NotFound(f"no imaging {imaging_id}")
        _check_access(conn, actor, int(row["patient_id"]))
        audit.record(conn, actor, action, "imaging", imaging_id, clinic_id=_audit_clinic(actor),
                     detail={"patient_id": row["patient_id"], "sha256": row["sha256"]})
        return row


@routes.get("/api/v1/imaging/{imaging_id:\\d+}")
async def api_imaging(request: web.Request) -> web.Response:
    actor = await require(request)
    row = await _guarded(request, _imaging_row, request.app[ENGINE], actor, int(request.match_info["imaging_id"]),
                         "imaging.read")
    return web.json_response({**imaging_json(row), "patient_id": row["patient_id"]})


@routes.get("/api/v1/imaging/{imaging_id:\\d+}/file")
async def api_imaging_file(request: web.Request) -> web.StreamResponse:
    actor = await require(request)
    row = await _guarded(request, _imaging_row, request.app[ENGINE], actor, int(request.match_info["imaging_id"]),
                         "imaging.download")
    store = imaging.AttachmentStore(request.app[CONFIG].records.attachments_dir)
    try:
        path = store.path(row["storage_path"])
    except imaging.ImagingError as exc:
        return _json_error(exc.status, str(exc))
    if not path.is_file():
        return _json_error(410, f"the file of imaging {row['id']} is missing from the attachment store "
                                f"({row['storage_path']}); restore it from the backup")
    name = (row["filename"] or f"{row['sop_instance_uid'] or row['sha256']}.dcm").replace('"', "")
    return web.FileResponse(path, headers={
        "Content-Type": "application/dicom", "Content-Disposition": f'attachment; filename="{name}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "ETag": f'"{row["sha256"]}"'})


# ---- merging -------------------------------------------------------------------------------------
def _counts(conn: sa.Connection, patient_id: int) -> dict[str, int]:
    return {name: int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                   .where(table.c.patient_id == patient_id)).scalar_one())
            for name, table in (("visits", visits), ("imaging", imaging_table), ("consultations", consultations))}


def _merge_view(engine: sa.Engine, actor: Actor, survivor: int | None, merged: int | None) -> tuple[Any, Any]:
    with engine.begin() as conn:
        candidates = records.open_duplicates(conn)
        pair = None
        if survivor is not None and merged is not None:
            sides = []
            for pid in (survivor, merged):
                row = records.find_patient(conn, pid)
                if row is None:
                    raise NotFound(f"no patient {pid}")
                sides += [patient_json(row, records.identifiers_of(conn, pid)), _counts(conn, pid)]
            pair = tuple(sides)
            audit.record(conn, actor, "patient.compare", "patient", survivor, detail={"other": merged})
        return candidates, pair


def _merge(engine: sa.Engine, actor: Actor, survivor: int, merged: int, reason: str | None) -> dict[str, Any]:
    with engine.begin() as conn:
        result = patient_merge.merge(conn, survivor, merged, by_user_id=actor.user_id, reason=reason, now=now_ms())
        audit.record(conn, actor, "patient.merge", "patient", survivor,
                     detail={"merged_id": merged, "merge_id": result.merge_id, "moved": result.counts(),
                             "reason": reason})
        return {"merge_id": result.merge_id, "survivor_id": survivor, "merged_id": merged, "moved": result.counts()}


def _undo(engine: sa.Engine, actor: Actor, merge_id: int) -> dict[str, Any]:
    with engine.begin() as conn:
        result = patient_merge.undo(conn, merge_id, by_user_id=actor.user_id, now=now_ms())
        audit.record(conn, actor, "patient.merge.undo", "patient", result.merged_id,
                     detail={"merge_id": merge_id, "survivor_id": result.survivor_id})
        return {"merge_id": merge_id, "survivor_id": result.survivor_id, "merged_id": result.merged_id}


def _dismiss(engine: sa.Engine, actor: Actor, duplicate_id: int) -> None:
    with engine.begin() as conn:
        if not records.dismiss_duplicate(conn, duplicate_id, actor.user_id, now=now_ms()):
            raise NotFound(f"no open duplicate candidate {duplicate_id}")
        audit.record(conn, actor, "patient.duplicate.dismiss", "patient_duplicate", duplicate_id)


def _int_field(fields: Mapping[str, Any], name: str) -> int:
    value = fields.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise PatientDataError(name, f"{value!r} is not a patient id (a positive integer)")


@routes.get("/api/v1/patients/duplicates")
async def api_duplicates(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    candidates, _pair = await _in_thread(_merge_view, request.app[ENGINE], actor, None, None)
    return web.json_response({"duplicates": [{**c, "created": iso_from_ms(c.pop("created_ms"))} for c in candidates]})


@routes.post("/api/v1/patients/duplicates/{duplicate_id:\\d+}/dismiss")
async def api_dismiss(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    duplicate_id = int(request.match_info["duplicate_id"])
    await _guarded(request, _dismiss, request.app[ENGINE], actor, duplicate_id)
    return web.json_response({"duplicate_id": duplicate_id, "resolution": "dismissed"})


@routes.post("/api/v1/patients/merges")
async def api_merge(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        body = await request.json()
        if not isinstance(body, dict):
            return _json_error(400, "the body must be a JSON object")
        survivor, merged = _int_field(body, "survivor_id"), _int_field(body, "merged_id")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise PatientDataError("reason", "must be a string")
        result = await _in_thread(_merge, request.app[ENGINE], actor, survivor, merged, reason)
    except ValueError:
        return _json_error(400, "the body is not JSON")
    except PatientDataError as exc:
        return _json_error(400, str(exc), exc.field)
    except patient_merge.MergeError as exc:
        return _json_error(409, str(exc))
    return web.json_response(result, status=201)


@routes.post("/api/v1/patients/merges/{merge_id:\\d+}/undo")
async def api_undo(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        result = await _in_thread(_undo, request.app[ENGINE], actor, int(request.match_info["merge_id"]))
    except patient_merge.MergeError as exc:
        return _json_error(409, str(exc))
    return web.json_response(result)


@routes.get("/patients/merge")
async def merge_page(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        survivor = _int_field(request.query, "survivor") if request.query.get("survivor") else None
        merged = _int_field(request.query, "merged") if request.query.get("merged") else None
    except PatientDataError as exc:
        candidates, _ = await _in_thread(_merge_view, request.app[ENGINE], actor, None, None)
        return html.response(patient_pages.merge_page(actor, candidates, None, str(exc)), status=400)
    candidates, pair = await _guarded(request, _merge_view, request.app[ENGINE], actor, survivor, merged)
    for c in candidates:
        c["created"] = iso_from_ms(c["created_ms"])
    return html.response(patient_pages.merge_page(actor, candidates, pair))


@routes.post("/patients/merge")
async def merge_form(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    form = await request.post()
    try:
        survivor, merged = _int_field(form, "survivor_id"), _int_field(form, "merged_id")
        await _in_thread(_merge, request.app[ENGINE], actor, survivor, merged, str(form.get("reason") or "") or None)
    except (PatientDataError, patient_merge.MergeError) as exc:
        candidates, _ = await _in_thread(_merge_view, request.app[ENGINE], actor, None, None)
        return html.response(patient_pages.merge_page(actor, candidates, None, str(exc)), status=400)
    raise web.HTTPSeeOther(f"/patients/{survivor}")


@routes.post("/patients/merges/{merge_id:\\d+}/undo")
async def undo_form(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        result = await _in_thread(_undo, request.app[ENGINE], actor, int(request.match_info["merge_id"]))
    except patient_merge.MergeError as exc:
        candidates, _ = await _in_thread(_merge_view, request.app[ENGINE], actor, None, None)
        return html.response(patient_pages.merge_page(actor, candidates, None, str(exc)), status=409)
    raise web.HTTPSeeOther(f"/patients/{result['merged_id']}")


@routes.post("/patients/duplicates/{duplicate_id:\\d+}/dismiss")
async def dismiss_form(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    await _guarded(request, _dismiss, request.app[ENGINE], actor, int(request.match_info["duplicate_id"]))
    raise web.HTTPSeeOther("/patients/merge")


# ---- OpenAPI ------------------------------------------------------------------------------------
_IDENTIFIER = {"type": "object", "properties": {"clinic_id": {"type": "string"}, "clinic": {"type": "string"},
                                                "mrn": {"type": "string", "description": "The clinic's record "
                                                        "number; what its devices send as the patient id"}}}
_PATIENT = {"type": "object", "properties": {
    "patient_id": {"type": "integer"}, "name": {"type": "string"}, "family_name": {"type": ["string", "null"]},
    "given_name": {"type": ["string", "null"]},
    "alt_name": {"type": ["string", "null"], "description": "The name in another script (e.g. pinyin)"},
    "sex": {"enum": ["female", "male", "other", "unknown", None]},
    "birth_date": {"type": ["string", "null"], "format": "date"}, "national_id": {"type": ["string", "null"]},
    "phone": {"type": ["string", "null"]}, "origin": {"enum": ["console", "checkin", "device", "import"]},
    "merged_into_id": {"type": ["integer", "null"]}, "identifiers": {"type": "array", "items": _IDENTIFIER},
    "created": {"type": "string", "format": "date-time"}, "updated": {"type": "string", "format": "date-time"},
    "link": {"type": "string"}, "fhir": {"type": "string"}}}
_MERGE = {"type": "object", "properties": {
    "id": {"type": "integer"}, "survivor_id": {"type": "integer"}, "merged_id": {"type": "integer"},
    "reason": {"type": ["string", "null"]}, "at": {"type": "string"}, "undone": {"type": ["string", "null"]},
    "moved": {"type": "object", "description": "Row ids per table that moved, fields filled in, the national id"}}}
_IMAGING = {"type": "object", "properties": {
    "imaging_id": {"type": "integer"}, "patient_id": {"type": "integer"}, "filename": {"type": ["string", "null"]},
    "modality": {"type": ["string", "null"]}, "study_date": {"type": ["string", "null"], "format": "date"},
    "study_description": {"type": ["string", "null"]}, "body_part": {"type": ["string", "null"]},
    "study_instance_uid": {"type": ["string", "null"]}, "series_instance_uid": {"type": ["string", "null"]},
    "sop_instance_uid": {"type": "string"}, "size_bytes": {"type": "integer"}, "sha256": {"type": "string"},
    "tags": {"type": "object", "description": "Key DICOM tags by keyword, as read at upload"},
    "download": {"type": "string"}, "duplicate": {"type": "boolean"}}}
_TIMELINE = {"type": "object", "properties": {
    "since": {"type": "string"}, "until": {"type": "string"},
    "vitals_by_day": {"type": "array", "description": "Per UTC day: readings per metric (count, min, mean, max), "
                                                      "alarm and gap counts", "items": {"type": "object"}},
    "entries": {"type": "array", "description": "Newest first; type visit | consultation | imaging | alarm | gap "
                                                "| recording", "items": {"type": "object"}},
    "pending_readings": {"type": "integer", "description": "Readings held but not summarised yet"},
    "recordings": {"type": "string"}}}
_ERRORS = {"401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN}
_FIELD_ERROR = openapi.ok(openapi.ERROR, "A field is wrong; `field` names it")
_PID = openapi.path_param("patient_id", "The HQ patient id (a merged-away id answers for its survivor)",
                          {"type": "integer"})

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/patients": {
        "get": {"summary": "Search patients by name (Chinese or Latin script, any word, by prefix), national id or "
                           "clinic record number; limited to those the caller may see; audited",
                "parameters": [openapi.param("q", "The search terms; all must match"),
                               openapi.param("limit", "At most this many", {"type": "integer"})],
                "responses": {"200": openapi.ok({"type": "object", "properties": {
                    "query": {"type": "string"}, "patients": {"type": "array", "items": _PATIENT}}}),
                    "400": openapi.bad_request(), **_ERRORS}},
        "post": {"summary": "Register a patient: an existing record is found by national id, then by clinic and "
                            "record number; conflicting facts become a possible duplicate, never a silent merge",
                 "requestBody": openapi.json_body({"type": "object", "properties": {
                     name: {"type": "string"} for name in REGISTER_FIELDS}}),
                 "responses": {"201": openapi.ok({"type": "object"}, "A new record"),
                               "200": openapi.ok({"type": "object", "properties": {
                                   "patient": _PATIENT, "outcome": {"type": "string"},
                                   "possible_duplicates": {"type": "array", "items": {"type": "object"}}}},
                                   "An existing record"),
                               "400": _FIELD_ERROR, **_ERRORS}}},
    "/api/v1/patients/{patient_id}": {"get": {
        "summary": "A patient with record numbers and merges; audited", "parameters": [_PID],
        "responses": {"200": openapi.ok({"allOf": [_PATIENT, {"type": "object", "properties": {
            "merges": {"type": "array", "items": _MERGE}}}]}),
                      "404": openapi.ok(openapi.ERROR, "No such patient"), **_ERRORS}}},
    "/api/v1/patients/{patient_id}/timeline": {"get": {
        "summary": "The patient's timeline: readings per day, visits, alarms, gaps, imaging, consultations and "
                   "reports, recordings; audited",
        "parameters": [_PID, openapi.param("until", "End of the window (ISO 8601 with offset); default now"),
                       openapi.param("days", "Days before `until` (1-366)", {"type": "integer"})],
        "responses": {"200": openapi.ok({"allOf": [_PATIENT, {"type": "object", "properties": {
            "timeline": _TIMELINE}}]}),
                      "400": openapi.bad_request(), "404": openapi.ok(openapi.ERROR, "No such patient"), **_ERRORS}}},
    "/api/v1/patients/lookup": {"get": {
        "summary": "The patient a clinic's record number (a device's patient id) belongs to",
        "parameters": [openapi.param("clinic_id", "The clinic"), openapi.param("mrn", "The record number")],
        "responses": {"200": openapi.ok({"type": "object", "properties": {"patient_id": {"type": "integer"},
                                                                          "link": {"type": "string"}}}),
                      "400": openapi.bad_request(), "404": openapi.ok(openapi.ERROR, "Unknown number"), **_ERRORS}}},
    "/api/v1/patients/{patient_id}/imaging": {"post": {
        "summary": "Upload a DICOM file (multipart/form-data, part 'file'; optional field 'clinic_id'); kept once by "
                   "sha256, its key tags read and shown on the timeline; audited",
        "parameters": [_PID],
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}, "clinic_id": {"type": "string"}}}}}},
        "responses": {"201": openapi.ok(_IMAGING, "Filed"), "200": openapi.ok(_IMAGING, "Already filed"),
                      "400": openapi.ok(openapi.ERROR, "Not a (complete) DICOM file"),
                      "409": openapi.ok(openapi.ERROR, "The instance is filed on another patient"),
                      "413": openapi.ok(openapi.ERROR, "Larger than [records] max_upload_bytes"), **_ERRORS}}},
    "/api/v1/imaging/{imaging_id}": {"get": {
        "summary": "An imaging attachment's key tags; audited",
        "parameters": [openapi.path_param("imaging_id", "The attachment", {"type": "integer"})],
        "responses": {"200": openapi.ok(_IMAGING), "404": openapi.ok(openapi.ERROR, "No such attachment"),
                      **_ERRORS}}},
    "/api/v1/imaging/{imaging_id}/file": {"get": {
        "summary": "Download the original DICOM file; audited",
        "parameters": [openapi.path_param("imaging_id", "The attachment", {"type": "integer"})],
        "responses": {"200": {"description": "The file", "content": {"application/dicom": {"schema": {
            "type": "string", "format": "binary"}}}},
            "404": openapi.ok(openapi.ERROR, "No such attachment"),
            "410": openapi.ok(openapi.ERROR, "The file is missing from the store"), **_ERRORS}}},
    "/api/v1/patients/duplicates": {"get": {
        "summary": "Open duplicate candidates: pairs of records that may be one person (coordinators)",
        "responses": {"200": openapi.ok({"type": "object", "properties": {"duplicates": {"type": "array", "items": {
            "type": "object", "properties": {"id": {"type": "integer"}, "patient_id": {"type": "integer"},
                                             "other_id": {"type": "integer"}, "reason": {"type": "string"},
                                             "source": {"type": "string"}}}}}}), **_ERRORS}}},
    "/api/v1/patients/duplicates/{duplicate_id}/dismiss": {"post": {
        "summary": "Not the same person: close the candidate (coordinators); audited",
        "parameters": [openapi.path_param("duplicate_id", "The candidate", {"type": "integer"})],
        "responses": {"200": openapi.ok({"type": "object"}), "404": openapi.ok(openapi.ERROR, "No open candidate"),
                      **_ERRORS}}},
    "/api/v1/patients/merges": {"post": {
        "summary": "Merge record merged_id into survivor_id: record numbers (and their readings), visits, imaging, "
                   "consultations and appointments move; the merged record points at the survivor (coordinators); "
                   "audited, undoable",
        "requestBody": openapi.json_body({"type": "object", "required": ["survivor_id", "merged_id"], "properties": {
            "survivor_id": {"type": "integer"}, "merged_id": {"type": "integer"}, "reason": {"type": "string"}}}),
        "responses": {"201": openapi.ok({"type": "object", "properties": {
            "merge_id": {"type": "integer"}, "moved": {"type": "object"}}}),
            "400": _FIELD_ERROR, "409": openapi.ok(openapi.ERROR, "The merge cannot be done; the message says why"),
            **_ERRORS}}},
    "/api/v1/patients/merges/{merge_id}/undo": {"post": {
        "summary": "Undo a merge: what moved (and still belongs to the survivor) goes back (coordinators); audited",
        "parameters": [openapi.path_param("merge_id", "The merge", {"type": "integer"})],
        "responses": {"200": openapi.ok({"type": "object"}),
                      "409": openapi.ok(openapi.ERROR, "Cannot be undone; the message says why"), **_ERRORS}}},
}
