"""The expert directory in the console and the JSON API: the directory (search and filters), profiles, editing
(coordinators any profile, experts their own), credentials, review confirmations and the CSV import. Every
page has its JSON twin; every change is audited in its own transaction.

Thin handlers: the rules are in `hq.experts`, `hq.directory`, `hq.directory_import`, the markup in
`hq.console.experts_html`; the taxonomy's pages are `hq.console.departments`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, directory, directory_import, experts, openapi
from hq.auth import Actor, Role, current_actor, forbidden, require
from hq.clock import now_ms
from hq.console import experts_html as pages
from hq.console import html
from hq.console.api_calls import (
    AUTH,
    FIELD_ERROR,
    MANAGERS,
    NotFound,
    api_call,
    in_thread,
    is_manager,
    json_body,
)
from hq.console.departments import DEPARTMENT_FIELDS, all_departments
from hq.expert_fields import FieldProblem
from hq.expert_import import ENCODINGS, MAX_BYTES
from hq.query_params import ParamError

routes = web.RouteTableDef()


async def _form(request: web.Request, actor: Actor, expert_id: int, fn: Callable[..., Any], *args: Any
                ) -> web.Response:
    """A change from a profile page's form: back to the profile, or the profile with the problem."""
    try:
        await in_thread(request, fn, actor, expert_id, *args)
    except (NotFound, experts.ExpertNotFound, experts.CredentialNotFound) as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except FieldProblem as exc:
        return await _show_profile(request, actor, expert_id, str(exc), 400)
    except PermissionError as exc:
        raise forbidden(request, str(exc)) from None
    raise web.HTTPSeeOther(f"/experts/{expert_id}")


# ---- the work, in a thread ------------------------------------------------------------------------
def _find(engine: sa.Engine, actor: Actor, params: Mapping[str, str]
          ) -> tuple[directory.DirectoryQuery, list[dict[str, Any]], int]:
    now = now_ms()
    with engine.connect() as conn:
        query = directory.parse_query(conn, params)
        if actor.role is Role.EXPERT:  # experts see their own entry
            mine = directory.summaries(conn, [actor.expert_id], now) if actor.expert_id is not None else []
            return query, mine, len(mine)
        rows, total = directory.find(conn, query, scope=directory.department_scope(actor), now_ms=now)
        return query, rows, total


def _profile(engine: sa.Engine, actor: Actor, expert_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        found = directory.profile(conn, expert_id, now_ms())
    if found is None or not directory.may_view(actor, found):
        raise NotFound(f"no expert {expert_id}")
    return found


def _create(engine: sa.Engine, actor: Actor, given: Mapping[str, Any]) -> int:
    with engine.begin() as conn:
        expert_id = experts.create_expert(conn, given)
        audit.record(conn, actor, "expert.create", "expert", expert_id, detail={"fields": sorted(given)})
        return expert_id


def _update(engine: sa.Engine, actor: Actor, expert_id: int, given: Mapping[str, Any]) -> dict[str, Any]:
    if not directory.may_edit(actor, expert_id):
        raise PermissionError("coordinators edit profiles; experts their own")
    if not is_manager(actor) and set(given) - experts.SELF_EDITABLE:
        raise PermissionError(f"experts may change {', '.join(sorted(experts.SELF_EDITABLE))} of their own profile; "
                              f"not {', '.join(sorted(set(given) - experts.SELF_EDITABLE))}")
    with engine.begin() as conn:
        changed = experts.update_expert(conn, expert_id, given)
        if changed:
            audit.record(conn, actor, "expert.update", "expert", expert_id, detail={"changed": changed})
        return changed


def _review(engine: sa.Engine, actor: Actor, expert_id: int) -> None:
    with engine.begin() as conn:
        experts.mark_reviewed(conn, expert_id)
        audit.record(conn, actor, "expert.review", "expert", expert_id)


def _add_credential(engine: sa.Engine, actor: Actor, expert_id: int, given: Mapping[str, Any]) -> int:
    with engine.begin() as conn:
        credential_id = experts.add_credential(conn, expert_id, given)
        audit.record(conn, actor, "expert.credential.add", "expert", expert_id,
                     detail={"credential_id": credential_id, **{k: given.get(k) for k in experts.CREDENTIAL_FIELDS}})
        return credential_id


def _update_credential(engine: sa.Engine, actor: Actor, expert_id: int, credential_id: int,
                       given: Mapping[str, Any]) -> dict[str, Any]:
    with engine.begin() as conn:
        changed = experts.update_credential(conn, expert_id, credential_id, given)
        if changed:
            audit.record(conn, actor, "expert.credential.update", "expert", expert_id,
                         detail={"credential_id": credential_id, "changed": changed})
        return changed


def _remove_credential(engine: sa.Engine, actor: Actor, expert_id: int, credential_id: int) -> None:
    with engine.begin() as conn:
        removed = experts.remove_credential(conn, expert_id, credential_id)
        audit.record(conn, actor, "expert.credential.remove", "expert", expert_id,
                     detail={"credential_id": credential_id, "kind": removed["kind"],
                             "identifier": removed["identifier"]})


def _import(engine: sa.Engine, actor: Actor, data: bytes, encoding: str, dry_run: bool, source: str
            ) -> dict[str, Any]:
    return directory_import.import_file(engine, actor, data, encoding=encoding, dry_run=dry_run,
                                        source=source).to_json()


# ---- JSON API: experts --------------------------------------------------------------------------
def _expert_out(actor: Actor, expert: Mapping[str, Any]) -> dict[str, Any]:
    full = directory.sees_full_profiles(actor) or actor.expert_id == expert["id"]
    return directory.expert_json(expert, full=full, now_ms=now_ms())


@routes.get("/api/v1/experts")
async def api_experts(request: web.Request) -> web.Response:
    actor = await require(request)
    query, rows, total = await in_thread(request, _find, actor, dict(request.query))
    return web.json_response({"experts": [_expert_out(actor, r) for r in rows], "total": total,
                              "limit": query.limit, "offset": query.offset})


@routes.post("/api/v1/experts")
async def api_create_expert(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    expert_id = await api_call(request, _create, actor, await json_body(request))
    expert = await api_call(request, _profile, actor, expert_id)
    return web.json_response(_expert_out(actor, expert), status=201)


@routes.get("/api/v1/experts/{expert_id:\\d+}")
async def api_expert(request: web.Request) -> web.Response:
    actor = await require(request)
    expert = await api_call(request, _profile, actor, int(request.match_info["expert_id"]))
    return web.json_response(_expert_out(actor, expert))


@routes.patch("/api/v1/experts/{expert_id:\\d+}")
async def api_update_expert(request: web.Request) -> web.Response:
    actor = await require(request)
    expert_id = int(request.match_info["expert_id"])
    changed = await api_call(request, _update, actor, expert_id, await json_body(request))
    expert = await api_call(request, _profile, actor, expert_id)
    return web.json_response({**_expert_out(actor, expert), "changed": sorted(changed)})


@routes.post("/api/v1/experts/{expert_id:\\d+}/review")
async def api_review(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    expert_id = int(request.match_info["expert_id"])
    await api_call(request, _review, actor, expert_id)
    return web.json_response(_expert_out(actor, await api_call(request, _profile, actor, expert_id)))


async def _credential_out(request: web.Request, actor: Actor, expert_id: int, credential_id: int
                          ) -> dict[str, Any]:
    expert = await api_call(request, _profile, actor, expert_id)
    return next(c for c in _expert_out(actor, expert)["credentials"] if c["id"] == credential_id)


@routes.post("/api/v1/experts/{expert_id:\\d+}/credentials")
async def api_add_credential(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    expert_id = int(request.match_info["expert_id"])
    credential_id = await api_call(request, _add_credential, actor, expert_id, await json_body(request))
    return web.json_response(await _credential_out(request, actor, expert_id, credential_id), status=201)


@routes.patch("/api/v1/experts/{expert_id:\\d+}/credentials/{credential_id:\\d+}")
async def api_update_credential(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    expert_id, credential_id = int(request.match_info["expert_id"]), int(request.match_info["credential_id"])
    changed = await api_call(request, _update_credential, actor, expert_id, credential_id, await json_body(request))
    credential = await _credential_out(request, actor, expert_id, credential_id)
    return web.json_response({**credential, "changed": sorted(changed)})


@routes.delete("/api/v1/experts/{expert_id:\\d+}/credentials/{credential_id:\\d+}")
async def api_remove_credential(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    expert_id, credential_id = int(request.match_info["expert_id"]), int(request.match_info["credential_id"])
    await api_call(request, _remove_credential, actor, expert_id, credential_id)
    return web.json_response({"removed": credential_id})


def _import_options(query: Mapping[str, str]) -> tuple[str, bool]:
    encoding = query.get("encoding", "utf-8").strip().lower() or "utf-8"
    if encoding not in ENCODINGS:
        raise ParamError("encoding", f"unknown encoding {encoding!r}", "utf-8 or gbk")
    return encoding, query.get("dry_run", "") in ("1", "true", "yes", "on")


@routes.post("/api/v1/experts/import")
async def api_import(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    encoding, dry_run = _import_options(request.query)
    data = await request.content.read(MAX_BYTES + 1)
    report = await in_thread(request, _import, actor, data, encoding, dry_run, "api")
    return web.json_response(report, status=200 if report["committed"] or not report["errors"] else 422)


# ---- console pages ------------------------------------------------------------------------------
@routes.get("/experts")
async def directory_page(request: web.Request) -> web.Response:
    actor = await require(request)
    params = {k: v for k, v in request.query.items() if v}
    known = await in_thread(request, all_departments)
    try:
        query, rows, total = await in_thread(request, _find, actor, params)
    except ParamError as exc:
        page = pages.directory_page(actor, [], 0, params, known, full=directory.sees_full_profiles(actor),
                                    can_manage=is_manager(actor), limit=50, offset=0, error=str(exc))
        return html.response(page, status=400)
    scope = directory.department_scope(actor)
    shown = [d for d in known if scope is None or d["id"] in scope]
    return html.response(pages.directory_page(actor, rows, total, params, shown,
                                              full=directory.sees_full_profiles(actor),
                                              can_manage=is_manager(actor), limit=query.limit, offset=query.offset))


def _profile_json(actor: Actor, expert: Mapping[str, Any]) -> dict[str, Any]:
    """What the page shows is what the API says, so both read the same shape."""
    return {**expert, **_expert_out(actor, expert)}


async def _show_profile(request: web.Request, actor: Actor, expert_id: int, error: str | None = None,
                        status: int = 200) -> web.Response:
    try:
        expert = await in_thread(request, _profile, actor, expert_id)
    except NotFound:
        raise web.HTTPNotFound(text=f"No expert {expert_id}") from None
    full = directory.sees_full_profiles(actor) or actor.expert_id == expert_id
    page = pages.profile_page(actor, _profile_json(actor, expert), full=full,
                              can_edit=directory.may_edit(actor, expert_id), can_manage=is_manager(actor),
                              error=error)
    return html.response(page, status=status)


@routes.get("/experts/{expert_id:\\d+}")
async def profile_page(request: web.Request) -> web.Response:
    actor = await require(request)
    return await _show_profile(request, actor, int(request.match_info["expert_id"]))


def _form_values(expert: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": expert["name"], "title": expert["title"], "hospital": expert["hospital"],
            "department": expert["department"]["name"], "scope_of_practice": expert["scope_of_practice"],
            "time_zone": expert["time_zone"], "languages": "; ".join(expert["languages"]),
            "tags": "; ".join(expert["tags"]), "daily_cap": str(expert["daily_cap"]),
            "active": "yes" if expert["active"] else "no", "external_ref": expert["external_ref"] or "",
            "username": expert["username"] or ""}


async def _form_fields(request: web.Request, allowed: frozenset[str] | tuple[str, ...]) -> dict[str, str]:
    form = await request.post()
    return {k: str(form[k]) for k in experts.PROFILE_FIELDS if k in form and k in allowed}


@routes.get("/experts/new")
async def new_expert_page(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    known = await in_thread(request, all_departments)
    return html.response(pages.profile_form(actor, {"time_zone": "Asia/Shanghai", "languages": "zh",
                                                    "daily_cap": "8"}, known, action="/experts",
                                            title="Add an expert", self_edit=False))


@routes.post("/experts")
async def create_expert_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    given = await _form_fields(request, experts.PROFILE_FIELDS)
    given = {k: v for k, v in given.items() if v.strip() or k == "name"}
    try:
        expert_id = await in_thread(request, _create, actor, given)
    except FieldProblem as exc:
        known = await in_thread(request, all_departments)
        page = pages.profile_form(actor, given, known, action="/experts", title="Add an expert",
                                  self_edit=False, error=str(exc))
        return html.response(page, status=400)
    raise web.HTTPSeeOther(f"/experts/{expert_id}")


@routes.get("/experts/{expert_id:\\d+}/edit")
async def edit_expert_page(request: web.Request) -> web.Response:
    actor = await require(request)
    expert_id = int(request.match_info["expert_id"])
    if not directory.may_edit(actor, expert_id):
        raise forbidden(request, "coordinators edit profiles; experts their own")
    try:
        expert = await in_thread(request, _profile, actor, expert_id)
    except NotFound:
        raise web.HTTPNotFound(text=f"No expert {expert_id}") from None
    known = await in_thread(request, all_departments)
    return html.response(pages.profile_form(actor, _form_values(expert), known,
                                            action=f"/experts/{expert_id}/edit", title=f"Edit {expert['name']}",
                                            self_edit=not is_manager(actor)))


@routes.post("/experts/{expert_id:\\d+}/edit")
async def edit_expert_form(request: web.Request) -> web.Response:
    actor = await require(request)
    expert_id = int(request.match_info["expert_id"])
    allowed = experts.PROFILE_FIELDS if is_manager(actor) else tuple(experts.SELF_EDITABLE)
    given = await _form_fields(request, allowed)
    try:
        await in_thread(request, _update, actor, expert_id, given)
    except PermissionError as exc:
        raise forbidden(request, str(exc)) from None
    except (experts.ExpertNotFound, NotFound):
        raise web.HTTPNotFound(text=f"No expert {expert_id}") from None
    except FieldProblem as exc:
        known = await in_thread(request, all_departments)
        page = pages.profile_form(actor, given, known, action=f"/experts/{expert_id}/edit",
                                  title="Edit profile", self_edit=not is_manager(actor), error=str(exc))
        return html.response(page, status=400)
    raise web.HTTPSeeOther(f"/experts/{expert_id}")


@routes.post("/experts/{expert_id:\\d+}/review")
async def review_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    return await _form(request, actor, int(request.match_info["expert_id"]), _review)


async def _credential_form(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {k: str(form[k]) for k in experts.CREDENTIAL_FIELDS if k in form}


@routes.post("/experts/{expert_id:\\d+}/credentials")
async def add_credential_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    return await _form(request, actor, int(request.match_info["expert_id"]), _add_credential,
                       await _credential_form(request))


@routes.post("/experts/{expert_id:\\d+}/credentials/{credential_id:\\d+}")
async def update_credential_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    return await _form(request, actor, int(request.match_info["expert_id"]), _update_credential,
                       int(request.match_info["credential_id"]), await _credential_form(request))


@routes.post("/experts/{expert_id:\\d+}/credentials/{credential_id:\\d+}/delete")
async def remove_credential_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    return await _form(request, actor, int(request.match_info["expert_id"]), _remove_credential,
                       int(request.match_info["credential_id"]))


@routes.get("/experts/import")
async def import_page(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    return html.response(pages.import_page(actor))


@routes.post("/experts/import")
async def import_form(request: web.Request) -> web.Response:
    try:
        actor = await require(request, *MANAGERS)
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        # The console's forms are read whole, up to aiohttp's request limit; the API streams larger files.
        who = await current_actor(request)
        if who is None or not is_manager(who):
            raise
        limit = int(getattr(request.app, "_client_max_size", 1024**2))  # aiohttp keeps no public accessor
        problem = (f"The file is larger than one console upload may be ({limit // 1024:,} KB, about "
                   f"{limit // 150:,} experts). Split it, or send it to POST /api/v1/experts/import, which takes up "
                   f"to {MAX_BYTES // 1024 // 1024} MB.")
        return html.response(pages.import_page(who, error=problem), status=413)
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return html.response(pages.import_page(actor, error="Choose a CSV file to upload."), status=400)
    data = upload.file.read(MAX_BYTES + 1)
    try:
        encoding, dry_run = _import_options({k: str(v) for k, v in form.items() if isinstance(v, str)})
    except ParamError as exc:
        return html.response(pages.import_page(actor, error=str(exc)), status=400)
    report = await in_thread(request, _import, actor, data, encoding, dry_run, f"upload {upload.filename}")
    status = 200 if report["committed"] or not report["errors"] else 422
    return html.response(pages.import_page(actor, report), status=status)


# ---- OpenAPI ------------------------------------------------------------------------------------
_DEPARTMENT_REF = {"type": "object", "properties": DEPARTMENT_FIELDS}
_CAPABILITY = {"type": "object", "description": "Figures from history (consultations, dispatch offers)",
               "properties": {
                   "consultations_done": {"type": "integer", "description": "Reported or closed"},
                   "offers": {"type": "integer"}, "offers_accepted": {"type": "integer"},
                   "acceptance_rate": {"type": ["number", "null"]},
                   "median_response_s": {"type": ["number", "null"], "description": "accepted_ms - offered_ms"},
                   "p90_response_s": {"type": ["number", "null"], "description": "Nearest rank"},
                   "ratings": {"type": "integer"}, "rating_avg": {"type": ["number", "null"]},
                   "adoption_answers": {"type": "integer"}, "adoption_rate": {"type": ["number", "null"]},
                   "last_consultation": {"type": ["string", "null"], "format": "date-time"},
                   "computed": {"type": ["string", "null"], "format": "date-time"}}}
_CREDENTIAL = {"type": "object", "properties": {
    "id": {"type": "integer"}, "kind": {"type": "string"}, "identifier": {"type": "string"},
    "issuer": {"type": "string"}, "expires_on": {"type": ["string", "null"], "format": "date",
                                                 "description": "Valid through this day (UTC); null: no expiry"},
    "valid": {"type": "boolean"}, "updated": {"type": "string", "format": "date-time"}}}
_EXPERT_FIELDS: dict[str, Any] = {
    "id": {"type": "integer"}, "name": {"type": "string"}, "title": {"type": "string"},
    "hospital": {"type": "string"}, "department": _DEPARTMENT_REF,
    "scope_of_practice": {"type": "string"}, "time_zone": {"type": "string"},
    "languages": {"type": "array", "items": {"type": "string"}, "description": "BCP 47"},
    "tags": {"type": "array", "items": {"type": "string"}}, "daily_cap": {"type": "integer"},
    "active": {"type": "boolean"}, "capability": _CAPABILITY,
    "external_ref": {"type": ["string", "null"]}, "username": {"type": ["string", "null"]},
    "credentials_expire_on": {"type": ["string", "null"], "format": "date"},
    "created": {"type": "string", "format": "date-time"},
    "profile_updated": {"type": "string", "format": "date-time"},
    "reviewed": {"type": ["string", "null"], "format": "date-time"},
    "review": {"type": "array", "items": {"type": "object", "properties": {
        "code": {"enum": list(directory.REVIEW_CODES)}, "text": {"type": "string"}}}},
    "credentials": {"type": "array", "items": _CREDENTIAL}}
EXPERT_SCHEMA = {"type": "object", "description": "Clinic staff see the public fields; coordinators, department "
                 "heads (their departments) and the expert themself also see credentials, review flags and links",
                 "properties": _EXPERT_FIELDS}
_PROFILE_INPUT = {"type": "object", "additionalProperties": False, "properties": {
    "name": {"type": "string"}, "title": {"type": "string"}, "hospital": {"type": "string"},
    "department": {"type": ["integer", "string"], "description": "Id, or any name or synonym (心内科, Cardiology)"},
    "scope_of_practice": {"type": "string"}, "time_zone": {"type": "string", "description": "IANA, e.g. Asia/Shanghai"},
    "languages": {"type": ["array", "string"], "items": {"type": "string"}, "description": "BCP 47 or names"},
    "tags": {"type": ["array", "string"], "items": {"type": "string"}}, "daily_cap": {"type": "integer"},
    "active": {"type": "boolean"}, "external_ref": {"type": ["string", "null"]},
    "username": {"type": ["string", "null"], "description": "A console account with the role expert, to link"}}}
_DEPARTMENT = {"type": "object", "properties": {
    **DEPARTMENT_FIELDS, "synonyms": {"type": "array", "items": {"type": "string"}},
    "active_experts": {"type": "integer"},
    "heads": {"type": "array", "items": {"type": "object", "properties": {
        "user_id": {"type": "integer"}, "username": {"type": "string"}, "display_name": {"type": "string"}}}}}}
_ROW_ERROR = {"type": "object", "properties": {
    "row": {"type": ["integer", "null"], "description": "Spreadsheet row (the header is 1); null: the whole file"},
    "line": {"type": ["integer", "null"]}, "column": {"type": ["string", "null"]},
    "value": {"type": ["string", "null"]}, "error": {"type": "string"}, "expected": {"type": "string"},
    "message": {"type": "string"}}}
_IMPORT_REPORT = {"type": "object", "properties": {
    "committed": {"type": "boolean"}, "dry_run": {"type": "boolean"}, "encoding": {"enum": list(ENCODINGS)},
    "delimiter": {"type": "string"}, "rows": {"type": "integer"}, "created": {"type": "integer"},
    "updated": {"type": "integer"}, "unchanged": {"type": "integer"},
    "created_ids": {"type": "array", "items": {"type": "integer"}},
    "updated_ids": {"type": "array", "items": {"type": "integer"}},
    "errors": {"type": "array", "items": _ROW_ERROR}}}
_AUTH = {"401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN}
_EXPERT_ID = openapi.path_param("expert_id", "The expert", {"type": "integer"})
_CREDENTIAL_ID = openapi.path_param("credential_id", "The credential", {"type": "integer"})
_DEPARTMENT_ID = openapi.path_param("department_id", "The department", {"type": "integer"})
_NOT_FOUND = openapi.ok(openapi.ERROR, "No such expert, credential or department")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/experts": {
        "get": {"summary": "The expert directory, by name (department heads: their departments; experts: "
                           "themselves; clinic staff: public profiles)",
                "parameters": [openapi.param("q", "Text in the name, title, hospital or reference, or a department "
                                                  "name"),
                               openapi.param("department", "Department id or any of its names"),
                               openapi.param("tag", "A skill or disease tag"),
                               openapi.param("language", "A language (BCP 47 or a name)"),
                               openapi.param("review", "Only experts with this review flag ('any': any flag)",
                                             {"enum": ["any", *directory.REVIEW_CODES]}),
                               openapi.param("include_inactive", "1: inactive experts too"),
                               openapi.param("limit", "Page size (default 50)", {"type": "integer", "maximum": 200}),
                               openapi.param("offset", "Skip this many", {"type": "integer"})],
                "responses": {"200": openapi.ok({"type": "object", "properties": {
                    "experts": {"type": "array", "items": EXPERT_SCHEMA}, "total": {"type": "integer"},
                    "limit": {"type": "integer"}, "offset": {"type": "integer"}}}),
                    "400": openapi.bad_request(), **AUTH}},
        "post": {"summary": "Add an expert (coordinators); audited",
                 "requestBody": openapi.json_body({**_PROFILE_INPUT, "required": ["name", "department"]}),
                 "responses": {"201": openapi.ok(EXPERT_SCHEMA, "Created"), "400": FIELD_ERROR, **AUTH}}},
    "/api/v1/experts/{expert_id}": {
        "get": {"summary": "One expert's profile: credentials, live capability figures, review flags",
                "parameters": [_EXPERT_ID],
                "responses": {"200": openapi.ok(EXPERT_SCHEMA), "404": _NOT_FOUND, **AUTH}},
        "patch": {"summary": "Change profile fields (coordinators; experts their own title, hospital, scope, time "
                             "zone, languages and tags); audited",
                  "parameters": [_EXPERT_ID], "requestBody": openapi.json_body(_PROFILE_INPUT),
                  "responses": {"200": openapi.ok({**EXPERT_SCHEMA, "properties": {
                      **_EXPERT_FIELDS, "changed": {"type": "array", "items": {"type": "string"}}}}),
                      "400": FIELD_ERROR, "404": _NOT_FOUND, **AUTH}}},
    "/api/v1/experts/{expert_id}/review": {"post": {
        "summary": "Confirm the profile is current (coordinators): the six-month review clocks restart; audited",
        "parameters": [_EXPERT_ID], "responses": {"200": openapi.ok(EXPERT_SCHEMA), "404": _NOT_FOUND, **AUTH}}},
    "/api/v1/experts/{expert_id}/credentials": {"post": {
        "summary": "Add a credential (coordinators); an expired credential keeps the expert out of matching; audited",
        "parameters": [_EXPERT_ID],
        "requestBody": openapi.json_body({"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string"}, "identifier": {"type": "string"}, "issuer": {"type": "string"},
            "expires_on": {"type": ["string", "null"], "format": "date"}}}),
        "responses": {"201": openapi.ok(_CREDENTIAL, "Created"), "400": FIELD_ERROR, "404": _NOT_FOUND, **AUTH}}},
    "/api/v1/experts/{expert_id}/credentials/{credential_id}": {
        "patch": {"summary": "Change a credential, e.g. renew it with a new expiry (coordinators); audited",
                  "parameters": [_EXPERT_ID, _CREDENTIAL_ID],
                  "requestBody": openapi.json_body({"type": "object", "properties": {
                      "kind": {"type": "string"}, "identifier": {"type": "string"}, "issuer": {"type": "string"},
                      "expires_on": {"type": ["string", "null"], "format": "date"}}}),
                  "responses": {"200": openapi.ok(_CREDENTIAL), "400": FIELD_ERROR, "404": _NOT_FOUND, **AUTH}},
        "delete": {"summary": "Remove a credential (coordinators); audited",
                   "parameters": [_EXPERT_ID, _CREDENTIAL_ID],
                   "responses": {"200": openapi.ok({"type": "object", "properties": {"removed": {"type": "integer"}}}),
                                 "404": _NOT_FOUND, **AUTH}}},
    "/api/v1/experts/import": {"post": {
        "summary": "Import experts from a CSV file (coordinators): all or nothing, every problem listed by row and "
                   "column; a known ref updates that expert; audited",
        "parameters": [openapi.param("encoding", "utf-8 (default; a byte-order mark is fine) or gbk",
                                     {"enum": list(ENCODINGS)}),
                       openapi.param("dry_run", "1: check everything, write nothing")],
        "requestBody": {"required": True, "description": "The CSV file's bytes", "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": openapi.ok(_IMPORT_REPORT, "Imported (or, with dry_run, checked: no errors)"),
                      "422": openapi.ok(_IMPORT_REPORT, "The file has problems; nothing was imported"),
                      "400": openapi.bad_request(), **AUTH}}},
}
