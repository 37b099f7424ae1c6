"""FHIR R4 Practitioner and PractitionerRole: each expert as a Practitioner (names, identifiers, languages,
credentials as qualifications with their expiry) and their role (department as the specialty, coded in HQ's
taxonomy; skills; hospital; title), read and searched under /api/v1/fhir.

Building the resources is pure (`practitioner_resource`, `role_resource`); the handlers read through
`hq.directory` and scope like the directory (clinic staff: no qualifications; department heads: their
departments; experts: themselves). Ids: Practitioner/{expert id}, PractitionerRole/{expert id}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import directory, openapi
from hq.appkeys import ENGINE
from hq.auth import Actor, Role, require
from hq.clock import now_ms
from hq.fhir import common
from hq.models import departments, experts

routes = web.RouteTableDef()

SYSTEM_EXPERT = f"{common.SYSTEM_HQ_ID}:expert"
SYSTEM_EXPERT_REF = "urn:clinic-edge:expert-ref"  # the hospital's staff or licence number
SYSTEM_LANGUAGE = "urn:ietf:bcp:47"
MAX_RESULTS = 500
PRACTITIONER_PARAMS = ("_id", "name", "identifier", "active", "_count")
ROLE_PARAMS = ("_id", "practitioner", "specialty", "active", "_count")


SearchError = common.SearchError


# ---- resources (pure) ---------------------------------------------------------------------------
def practitioner_resource(expert: Mapping[str, Any], *, qualifications: bool) -> dict[str, Any]:
    """`expert`: a `hq.directory.profile` (or summary, without qualifications)."""
    identifiers = [{"use": "official", "system": SYSTEM_EXPERT, "value": str(expert["id"])}]
    if qualifications and expert.get("external_ref"):
        identifiers.append({"use": "secondary", "system": SYSTEM_EXPERT_REF, "value": expert["external_ref"]})
    resource: dict[str, Any] = {
        "resourceType": "Practitioner", "id": str(expert["id"]),
        "meta": {"lastUpdated": common.instant(expert["profile_updated_ms"])},
        "identifier": identifiers, "active": bool(expert["active"]),
        "name": [{"use": "official", "text": expert["name"]}],
        "communication": [{"coding": [{"system": SYSTEM_LANGUAGE, "code": tag}], "text": tag}
                          for tag in expert["languages"]],
    }
    if qualifications and expert.get("credentials"):
        resource["qualification"] = [_qualification(c) for c in expert["credentials"]]
    return resource


def _qualification(credential: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"code": {"text": credential["kind"]}}
    if credential["identifier"]:
        found["identifier"] = [{"value": credential["identifier"]}]
    if credential["expires_on"] is not None:
        found["period"] = {"end": credential["expires_on"].isoformat()}
    if credential["issuer"]:
        found["issuer"] = {"display": credential["issuer"]}
    return found


def role_resource(expert: Mapping[str, Any]) -> dict[str, Any]:
    department = expert["department"]
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole", "id": str(expert["id"]),
        "meta": {"lastUpdated": common.instant(expert["profile_updated_ms"])},
        "identifier": [{"system": SYSTEM_EXPERT, "value": str(expert["id"])}],
        "active": bool(expert["active"]),
        "practitioner": {**common.reference("Practitioner", expert["id"]), "display": expert["name"]},
        # The department first (coded in HQ's taxonomy), then the expert's skills and diseases as text.
        "specialty": [{"coding": [{"system": common.SYSTEM_DEPARTMENT, "code": department["code"],
                                   "display": department["name"]}], "text": department["name"]}]
        + [{"text": tag} for tag in expert["tags"]],
    }
    if expert["title"]:
        resource["code"] = [{"text": expert["title"]}]
    if expert["hospital"]:
        resource["organization"] = {"display": expert["hospital"]}
    return resource


# ---- search parameters --------------------------------------------------------------------------
def _reference_id(value: str, resource_type: str, name: str) -> int:
    text = value.strip().removeprefix(f"{resource_type}/")
    if not text.isdigit():
        raise SearchError(f"{name} {value!r}: expected {resource_type}/ID or ID")
    return int(text)


def _active(params: Mapping[str, str]) -> bool | None:
    text = params.get("active", "").strip().lower()
    if not text:
        return None
    if text not in ("true", "false"):
        raise SearchError(f"active {text!r}: expected true or false")
    return text == "true"


def _identifier(value: str) -> sa.ColumnElement[bool]:
    system, _, code = value.rpartition("|")
    if system in ("", SYSTEM_EXPERT) and code.isdigit():
        by_id: sa.ColumnElement[bool] = experts.c.id == int(code)
        return by_id if system else sa.or_(by_id, experts.c.external_ref == code)
    if system in ("", SYSTEM_EXPERT_REF):
        return experts.c.external_ref == code
    raise SearchError(f"identifier {value!r}: expected {SYSTEM_EXPERT}|ID or {SYSTEM_EXPERT_REF}|REF")


# ---- reading ------------------------------------------------------------------------------------
def _search(engine: sa.Engine, actor: Actor, conditions: list[sa.ColumnElement[bool]], limit: int,
            with_credentials: bool) -> list[dict[str, Any]]:
    now = now_ms()
    q = sa.select(experts.c.id).join(departments, departments.c.id == experts.c.department_id)
    scope = directory.department_scope(actor)
    if scope is not None:
        q = q.where(experts.c.department_id.in_(sorted(scope)))
    if actor.role is Role.EXPERT:
        q = q.where(experts.c.id == (actor.expert_id if actor.expert_id is not None else -1))
    with engine.connect() as conn:
        ids = list(conn.execute(q.where(*conditions).order_by(experts.c.id).limit(limit)).scalars())
        if not with_credentials:
            return directory.summaries(conn, ids, now)
        return [p for p in (directory.profile(conn, i, now) for i in ids) if p is not None]


def _shows_qualifications(actor: Actor, expert: Mapping[str, Any]) -> bool:
    return directory.sees_full_profiles(actor) or actor.expert_id == expert["id"]


def _bad(message: str) -> web.Response:
    return common.fhir_response(common.operation_outcome("error", "invalid", message), 400)


async def _practitioners(request: web.Request, actor: Actor, conditions: list[sa.ColumnElement[bool]],
                         limit: int) -> list[dict[str, Any]]:
    full = directory.sees_full_profiles(actor) or actor.role is Role.EXPERT
    found = await asyncio.to_thread(_search, request.app[ENGINE], actor, conditions, limit, full)
    return [practitioner_resource(e, qualifications=_shows_qualifications(actor, e)) for e in found]


@routes.get("/api/v1/fhir/Practitioner")
async def search_practitioners(request: web.Request) -> web.Response:
    actor = await require(request)
    params = dict(request.query)
    try:
        common.check_params(params, PRACTITIONER_PARAMS)
        conditions: list[sa.ColumnElement[bool]] = []
        if "_id" in params:
            conditions.append(experts.c.id == _reference_id(params["_id"], "Practitioner", "_id"))
        if name := params.get("name", "").strip():
            key = name.casefold().replace("%", "\\%").replace("_", "\\_")
            conditions.append(sa.func.lower(experts.c.name).like(f"%{key}%", escape="\\"))
        if "identifier" in params:
            conditions.append(_identifier(params["identifier"]))
        if (active := _active(params)) is not None:
            conditions.append(experts.c.active.is_(active))
        limit = common.search_count(params, MAX_RESULTS)
    except SearchError as exc:
        return _bad(str(exc))
    found = await _practitioners(request, actor, conditions, limit)
    return common.fhir_response(common.searchset(found, common.base_url(request)))


@routes.get("/api/v1/fhir/Practitioner/{expert_id}")
async def read_practitioner(request: web.Request) -> web.Response:
    actor = await require(request)
    text = request.match_info["expert_id"]
    found = await _practitioners(request, actor, [experts.c.id == int(text)], 1) if text.isdigit() else []
    return common.fhir_response(found[0]) if found else common.not_found("Practitioner", text)


@routes.get("/api/v1/fhir/PractitionerRole")
async def search_roles(request: web.Request) -> web.Response:
    actor = await require(request)
    params = dict(request.query)
    try:
        common.check_params(params, ROLE_PARAMS)
        conditions: list[sa.ColumnElement[bool]] = []
        if "_id" in params:
            conditions.append(experts.c.id == _reference_id(params["_id"], "PractitionerRole", "_id"))
        if "practitioner" in params:
            conditions.append(experts.c.id == _reference_id(params["practitioner"], "Practitioner", "practitioner"))
        if specialty := params.get("specialty", "").strip():
            system, _, code = specialty.rpartition("|")
            if system not in ("", common.SYSTEM_DEPARTMENT):
                raise SearchError(f"specialty {specialty!r}: expected {common.SYSTEM_DEPARTMENT}|CODE or CODE")
            conditions.append(departments.c.code == code)
        if (active := _active(params)) is not None:
            conditions.append(experts.c.active.is_(active))
        limit = common.search_count(params, MAX_RESULTS)
    except SearchError as exc:
        return _bad(str(exc))
    found = await asyncio.to_thread(_search, request.app[ENGINE], actor, conditions, limit, False)
    return common.fhir_response(common.searchset([role_resource(e) for e in found], common.base_url(request)))


@routes.get("/api/v1/fhir/PractitionerRole/{expert_id}")
async def read_role(request: web.Request) -> web.Response:
    actor = await require(request)
    text = request.match_info["expert_id"]
    found = await asyncio.to_thread(_search, request.app[ENGINE], actor, [experts.c.id == int(text)], 1, False) \
        if text.isdigit() else []
    return common.fhir_response(role_resource(found[0])) if found else common.not_found("PractitionerRole", text)


_FHIR = {"description": "FHIR R4 JSON", "content": {common.FHIR_JSON: {"schema": {"type": "object"}}}}
_ID = openapi.path_param("expert_id", "The expert's id", {"type": "integer"})
_COUNT = openapi.param("_count", f"At most this many (default 100, at most {MAX_RESULTS})", {"type": "integer"})
_ACTIVE = openapi.param("active", "true or false")
_SCOPE = ("Scoped like the directory: department heads see their departments, experts themselves; "
          "qualifications (credentials) are not shown to clinic staff")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/fhir/Practitioner": {"get": {
        "summary": "Search experts as FHIR Practitioners (a searchset Bundle)", "description": _SCOPE,
        "parameters": [openapi.param("_id", "Practitioner id"), openapi.param("name", "Part of the name"),
                       openapi.param("identifier", f"{SYSTEM_EXPERT}|ID or {SYSTEM_EXPERT_REF}|REF"), _ACTIVE,
                       _COUNT],
        "responses": {"200": _FHIR, "400": {"description": "OperationOutcome: a search parameter is not understood"},
                      "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/Practitioner/{expert_id}": {"get": {
        "summary": "An expert as a FHIR Practitioner: names, identifiers, languages, qualifications with expiry",
        "description": _SCOPE, "parameters": [_ID],
        "responses": {"200": _FHIR, "404": {"description": "OperationOutcome: no such Practitioner"},
                      "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/PractitionerRole": {"get": {
        "summary": "Search experts' roles (department as the specialty, skills, hospital, title)",
        "description": _SCOPE,
        "parameters": [openapi.param("_id", "PractitionerRole id"),
                       openapi.param("practitioner", "Practitioner/ID"),
                       openapi.param("specialty", f"A department code, or {common.SYSTEM_DEPARTMENT}|CODE"),
                       _ACTIVE, _COUNT],
        "responses": {"200": _FHIR, "400": {"description": "OperationOutcome: a search parameter is not understood"},
                      "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/PractitionerRole/{expert_id}": {"get": {
        "summary": "An expert's role as a FHIR PractitionerRole", "description": _SCOPE, "parameters": [_ID],
        "responses": {"200": _FHIR, "404": {"description": "OperationOutcome: no such PractitionerRole"},
                      "401": openapi.UNAUTHORIZED}}},
}
