"""Patient records in the console and the JSON API: search, registration, a patient's timeline (live vitals,
days of readings, visits, imaging, consultations) and the lookup of a device's patient id. Every page has its
JSON twin under /api/v1 (`OPENAPI_PATHS`); every read and change is audited. Imaging and merging have their
own modules (`patient_imaging`, `patient_merges`).

Thin handlers: the rules are in `hq.records`, `hq.patient_search`; markup in `hq.console.patient_pages`. Work
on the database runs in a thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from hq import audit, openapi, patient_merge, patient_search, queries, records
from hq.appkeys import CONFIG, ENGINE
from hq.auth import Actor, Role, require
from hq.clock import iso_from_ms, now_ms
from hq.console import html, patient_pages
from hq.console.patient_api import (
    ERRORS,
    FIELD_ERROR,
    MERGE_SCHEMA,
    MERGERS,
    PATIENT_ID_PARAM,
    PATIENT_SCHEMA,
    REGISTRARS,
    Denied,
    NotFound,
    audit_clinic,
    check_access,
    guarded,
    in_thread,
    json_error,
    merge_json,
    patient_json,
)
from hq.models import clinics, observations
from hq.patient_matching import PatientDataError
from hq.patient_timeline import DAY_MS, snapshot
from hq.query_params import ParamError, parse_instant
from hq.representations import observation_json

routes = web.RouteTableDef()

SEARCH_MAX_CHARS = 200


# ---- search --------------------------------------------------------------------------------------
def _search(engine: sa.Engine, actor: Actor, query: str, limit: int) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        hits = patient_search.find(conn, query, actor=actor, limit=limit)
        rows = patient_search.describe(conn, hits)
        audit.record(conn, actor, "patient.search", "patient", None, clinic_id=audit_clinic(actor),
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
    rows = await in_thread(_search, request.app[ENGINE], actor, query, limit) if query else []
    return web.json_response({"query": query, "patients": rows})


def _clinic_ids(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(clinics.c.id).order_by(clinics.c.id)).scalars())


@routes.get("/patients")
async def search_page(request: web.Request) -> web.Response:
    actor = await require(request)
    query = _query(request)
    results = await in_thread(_search, request.app[ENGINE], actor, query,
                               request.app[CONFIG].records.search_results) if query else None
    may_register = actor.role in (Role.ADMIN, *REGISTRARS)
    choice = await in_thread(_clinic_ids, request.app[ENGINE]) if actor.sees_all_clinics else \
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
        return json_error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return json_error(400, "the body must be a JSON object")
    try:
        result = await guarded(request, _register, request.app[ENGINE], actor, body)
    except PatientDataError as exc:
        return json_error(400, str(exc), exc.field)
    return web.json_response(result, status=201 if result["outcome"].startswith("created") else 200)


@routes.post("/patients")
async def register_form(request: web.Request) -> web.Response:
    actor = await require(request, *REGISTRARS)
    form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        result = await guarded(request, _register, request.app[ENGINE], actor, form)
    except PatientDataError as exc:
        choice = await in_thread(_clinic_ids, request.app[ENGINE]) if actor.sees_all_clinics else \
            [actor.clinic_id or ""]
        page = patient_pages.search_page(actor, "", None, may_register=True,
                                         may_merge=actor.role in (Role.ADMIN, *MERGERS), error=str(exc), form=form,
                                         clinic_choice=choice)
        return html.response(page, status=400)
    raise web.HTTPSeeOther(f"/patients/{result['patient']['patient_id']}")


# ---- one patient --------------------------------------------------------------------------------
def _patient(engine: sa.Engine, actor: Actor, patient_id: int) -> dict[str, Any]:
    with engine.begin() as conn:
        live = check_access(conn, actor, patient_id)
        row = records.find_patient(conn, live)
        assert row is not None
        doc = patient_json(row, records.identifiers_of(conn, live))
        doc["merges"] = [merge_json(m) for m in patient_merge.merges_of(conn, live)]
        doc["requested_id"] = patient_id
        audit.record(conn, actor, "patient.read", "patient", live, clinic_id=audit_clinic(actor))
        return doc


@routes.get("/api/v1/patients/{patient_id:\\d+}")
async def api_patient(request: web.Request) -> web.Response:
    actor = await require(request)
    doc = await guarded(request, _patient, request.app[ENGINE], actor, int(request.match_info["patient_id"]))
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
        live = check_access(conn, actor, patient_id)
        audit.record(conn, actor, "patient.timeline.read", "patient", live, clinic_id=audit_clinic(actor),
                     detail={"since": iso_from_ms(since_ms), "until": iso_from_ms(until_ms)})
    with snapshot(engine) as conn:
        row = records.find_patient(conn, live)
        assert row is not None
        doc = patient_json(row, records.identifiers_of(conn, live))
        doc["merges"] = [merge_json(m) for m in patient_merge.merges_of(conn, live)]
        doc["timeline"] = records.timeline(conn, live, since_ms=since_ms, until_ms=until_ms).to_json()
        return doc


@routes.get("/api/v1/patients/{patient_id:\\d+}/timeline")
async def api_timeline(request: web.Request) -> web.Response:
    actor = await require(request)
    since_ms, until_ms = _window(request)
    doc = await guarded(request, _timeline, request.app[ENGINE], actor, int(request.match_info["patient_id"]),
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
    doc = await guarded(request, _timeline, engine, actor, asked, since_ms, until_ms)
    if doc["patient_id"] != asked:
        raise web.HTTPSeeOther(f"/patients/{doc['patient_id']}?merged_from={asked}")
    vitals = await in_thread(_latest_vitals, engine, doc, actor)
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
        check_access(conn, actor, found)
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
    pid = await guarded(request, _lookup, request.app[ENGINE], actor, clinic_id, mrn)
    return web.json_response({"patient_id": pid, "link": f"/patients/{pid}"})


@routes.get("/patients/lookup")
async def lookup_page(request: web.Request) -> web.Response:
    actor = await require(request)
    clinic_id, mrn = _lookup_params(request)
    pid = await guarded(request, _lookup, request.app[ENGINE], actor, clinic_id, mrn)
    raise web.HTTPSeeOther(f"/patients/{pid}")



# ---- OpenAPI ------------------------------------------------------------------------------------
_TIMELINE = {"type": "object", "properties": {
    "since": {"type": "string"}, "until": {"type": "string"},
    "vitals_by_day": {"type": "array", "description": "Per UTC day: readings per metric (count, min, mean, max), "
                                                      "alarm and gap counts", "items": {"type": "object"}},
    "entries": {"type": "array", "description": "Newest first; type visit | consultation | imaging | alarm | gap "
                                                "| recording", "items": {"type": "object"}},
    "pending_readings": {"type": "integer", "description": "Readings held but not summarised yet"},
    "recordings": {"type": "string"}}}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/patients": {
        "get": {"summary": "Search patients by name (Chinese or Latin script, any word, by prefix), national id or "
                           "clinic record number; limited to those the caller may see; audited",
                "parameters": [openapi.param("q", "The search terms; all must match"),
                               openapi.param("limit", "At most this many", {"type": "integer"})],
                "responses": {"200": openapi.ok({"type": "object", "properties": {
                    "query": {"type": "string"}, "patients": {"type": "array", "items": PATIENT_SCHEMA}}}),
                    "400": openapi.bad_request(), **ERRORS}},
        "post": {"summary": "Register a patient: an existing record is found by national id, then by clinic and "
                            "record number; conflicting facts become a possible duplicate, never a silent merge",
                 "requestBody": openapi.json_body({"type": "object", "properties": {
                     name: {"type": "string"} for name in REGISTER_FIELDS}}),
                 "responses": {"201": openapi.ok({"type": "object"}, "A new record"),
                               "200": openapi.ok({"type": "object", "properties": {
                                   "patient": PATIENT_SCHEMA, "outcome": {"type": "string"},
                                   "possible_duplicates": {"type": "array", "items": {"type": "object"}}}},
                                   "An existing record"),
                               "400": FIELD_ERROR, **ERRORS}}},
    "/api/v1/patients/{patient_id}": {"get": {
        "summary": "A patient with record numbers and merges; audited", "parameters": [PATIENT_ID_PARAM],
        "responses": {"200": openapi.ok({"allOf": [PATIENT_SCHEMA, {"type": "object", "properties": {
            "merges": {"type": "array", "items": MERGE_SCHEMA}}}]}),
                      "404": openapi.ok(openapi.ERROR, "No such patient"), **ERRORS}}},
    "/api/v1/patients/{patient_id}/timeline": {"get": {
        "summary": "The patient's timeline: readings per day, visits, alarms, gaps, imaging, consultations and "
                   "reports, recordings; audited",
        "parameters": [PATIENT_ID_PARAM,
                       openapi.param("until", "End of the window (ISO 8601 with offset); default now"),
                       openapi.param("days", "Days before `until` (1-366)", {"type": "integer"})],
        "responses": {"200": openapi.ok({"allOf": [PATIENT_SCHEMA, {"type": "object", "properties": {
            "timeline": _TIMELINE}}]}),
                      "400": openapi.bad_request(), "404": openapi.ok(openapi.ERROR, "No such patient"), **ERRORS}}},
    "/api/v1/patients/lookup": {"get": {
        "summary": "The patient a clinic's record number (a device's patient id) belongs to",
        "parameters": [openapi.param("clinic_id", "The clinic"), openapi.param("mrn", "The record number")],
        "responses": {"200": openapi.ok({"type": "object", "properties": {"patient_id": {"type": "integer"},
                                                                          "link": {"type": "string"}}}),
                      "400": openapi.bad_request(), "404": openapi.ok(openapi.ERROR, "Unknown number"), **ERRORS}}},
}
