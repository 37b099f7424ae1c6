"""Duplicate patients in the console and the API: the open candidates, comparing two records, merging one into
the other and undoing it (coordinators), every step audited.

Thin handlers: the rules are `hq.patient_merge` and `hq.records`; markup in `hq.console.patient_pages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, openapi, patient_merge, records
from hq.appkeys import ENGINE
from hq.auth import Actor, require
from hq.clock import iso_from_ms, now_ms
from hq.console import html, patient_pages
from hq.console.patient_api import ERRORS, FIELD_ERROR, MERGERS, NotFound, guarded, in_thread, json_error, patient_json
from hq.models import consultations, imaging, visits
from hq.patient_matching import PatientDataError

routes = web.RouteTableDef()


# ---- merging -------------------------------------------------------------------------------------
def _counts(conn: sa.Connection, patient_id: int) -> dict[str, int]:
    return {name: int(conn.execute(sa.select(sa.func.count()).select_from(table)
                                   .where(table.c.patient_id == patient_id)).scalar_one())
            for name, table in (("visits", visits), ("imaging", imaging), ("consultations", consultations))}


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
    candidates, _pair = await in_thread(_merge_view, request.app[ENGINE], actor, None, None)
    return web.json_response({"duplicates": [{**c, "created": iso_from_ms(c.pop("created_ms"))} for c in candidates]})


@routes.post("/api/v1/patients/duplicates/{duplicate_id:\\d+}/dismiss")
async def api_dismiss(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    duplicate_id = int(request.match_info["duplicate_id"])
    await guarded(request, _dismiss, request.app[ENGINE], actor, duplicate_id)
    return web.json_response({"duplicate_id": duplicate_id, "resolution": "dismissed"})


@routes.post("/api/v1/patients/merges")
async def api_merge(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        body = await request.json()
        if not isinstance(body, dict):
            return json_error(400, "the body must be a JSON object")
        survivor, merged = _int_field(body, "survivor_id"), _int_field(body, "merged_id")
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise PatientDataError("reason", "must be a string")
        result = await in_thread(_merge, request.app[ENGINE], actor, survivor, merged, reason)
    except ValueError:
        return json_error(400, "the body is not JSON")
    except PatientDataError as exc:
        return json_error(400, str(exc), exc.field)
    except patient_merge.MergeError as exc:
        return json_error(409, str(exc))
    return web.json_response(result, status=201)


@routes.post("/api/v1/patients/merges/{merge_id:\\d+}/undo")
async def api_undo(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        result = await in_thread(_undo, request.app[ENGINE], actor, int(request.match_info["merge_id"]))
    except patient_merge.MergeError as exc:
        return json_error(409, str(exc))
    return web.json_response(result)


@routes.get("/patients/merge")
async def merge_page(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        survivor = _int_field(request.query, "survivor") if request.query.get("survivor") else None
        merged = _int_field(request.query, "merged") if request.query.get("merged") else None
    except PatientDataError as exc:
        candidates, _ = await in_thread(_merge_view, request.app[ENGINE], actor, None, None)
        return html.response(patient_pages.merge_page(actor, candidates, None, str(exc)), status=400)
    candidates, pair = await guarded(request, _merge_view, request.app[ENGINE], actor, survivor, merged)
    for c in candidates:
        c["created"] = iso_from_ms(c["created_ms"])
    return html.response(patient_pages.merge_page(actor, candidates, pair))


@routes.post("/patients/merge")
async def merge_form(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    form = await request.post()
    try:
        survivor, merged = _int_field(form, "survivor_id"), _int_field(form, "merged_id")
        await in_thread(_merge, request.app[ENGINE], actor, survivor, merged, str(form.get("reason") or "") or None)
    except (PatientDataError, patient_merge.MergeError) as exc:
        candidates, _ = await in_thread(_merge_view, request.app[ENGINE], actor, None, None)
        return html.response(patient_pages.merge_page(actor, candidates, None, str(exc)), status=400)
    raise web.HTTPSeeOther(f"/patients/{survivor}")


@routes.post("/patients/merges/{merge_id:\\d+}/undo")
async def undo_form(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    try:
        result = await in_thread(_undo, request.app[ENGINE], actor, int(request.match_info["merge_id"]))
    except patient_merge.MergeError as exc:
        candidates, _ = await in_thread(_merge_view, request.app[ENGINE], actor, None, None)
        return html.response(patient_pages.merge_page(actor, candidates, None, str(exc)), status=409)
    raise web.HTTPSeeOther(f"/patients/{result['merged_id']}")


@routes.post("/patients/duplicates/{duplicate_id:\\d+}/dismiss")
async def dismiss_form(request: web.Request) -> web.Response:
    actor = await require(request, *MERGERS)
    await guarded(request, _dismiss, request.app[ENGINE], actor, int(request.match_info["duplicate_id"]))
    raise web.HTTPSeeOther("/patients/merge")



# ---- OpenAPI ------------------------------------------------------------------------------------
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/patients/duplicates": {"get": {
        "summary": "Open duplicate candidates: pairs of records that may be one person (coordinators)",
        "responses": {"200": openapi.ok({"type": "object", "properties": {"duplicates": {"type": "array", "items": {
            "type": "object", "properties": {"id": {"type": "integer"}, "patient_id": {"type": "integer"},
                                             "other_id": {"type": "integer"}, "reason": {"type": "string"},
                                             "source": {"type": "string"}}}}}}), **ERRORS}}},
    "/api/v1/patients/duplicates/{duplicate_id}/dismiss": {"post": {
        "summary": "Not the same person: close the candidate (coordinators); audited",
        "parameters": [openapi.path_param("duplicate_id", "The candidate", {"type": "integer"})],
        "responses": {"200": openapi.ok({"type": "object"}), "404": openapi.ok(openapi.ERROR, "No open candidate"),
                      **ERRORS}}},
    "/api/v1/patients/merges": {"post": {
        "summary": "Merge record merged_id into survivor_id: record numbers (and their readings), visits, imaging, "
                   "consultations and appointments move; the merged record points at the survivor (coordinators); "
                   "audited, undoable",
        "requestBody": openapi.json_body({"type": "object", "required": ["survivor_id", "merged_id"], "properties": {
            "survivor_id": {"type": "integer"}, "merged_id": {"type": "integer"}, "reason": {"type": "string"}}}),
        "responses": {"201": openapi.ok({"type": "object", "properties": {
            "merge_id": {"type": "integer"}, "moved": {"type": "object"}}}),
            "400": FIELD_ERROR, "409": openapi.ok(openapi.ERROR, "The merge cannot be done; the message says why"),
            **ERRORS}}},
    "/api/v1/patients/merges/{merge_id}/undo": {"post": {
        "summary": "Undo a merge: what moved (and still belongs to the survivor) goes back (coordinators); audited",
        "parameters": [openapi.path_param("merge_id", "The merge", {"type": "integer"})],
        "responses": {"200": openapi.ok({"type": "object"}),
                      "409": openapi.ok(openapi.ERROR, "Cannot be undone; the message says why"), **ERRORS}}},
}
