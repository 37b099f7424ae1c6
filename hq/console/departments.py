"""The department taxonomy in the console and the JSON API: every department with the names it goes by, the
department resolving a name, coordinators adding departments and synonyms and setting heads; audited.

Thin handlers: the rules are `hq.departments`, the page's markup `hq.console.experts_html`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, departments, openapi
from hq.auth import Actor, require
from hq.console import experts_html as pages
from hq.console import html
from hq.console.api_calls import (
    AUTH,
    FIELD_ERROR,
    MANAGERS,
    api_call,
    in_thread,
    is_manager,
    json_body,
    json_error,
)
from hq.departments import DepartmentError
from hq.models import users
from hq.query_params import ParamError

routes = web.RouteTableDef()


# ---- the work, in a thread ------------------------------------------------------------------------
def all_departments(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return departments.list_departments(conn)


def _department_heads(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(users.c.id, users.c.username).where(
            users.c.role == "department_head", users.c.active.is_(True)).order_by(users.c.username)).mappings()]


def _create_department(engine: sa.Engine, actor: Actor, given: Mapping[str, Any]) -> int:
    with engine.begin() as conn:
        department_id = departments.create_department(conn, str(given.get("code") or ""),
                                                      str(given.get("name") or ""), str(given.get("name_zh") or ""))
        audit.record(conn, actor, "department.create", "department", department_id,
                     detail={k: given.get(k) for k in ("code", "name", "name_zh")})
        return department_id


def _add_synonym(engine: sa.Engine, actor: Actor, department_id: int, name: str) -> str:
    with engine.begin() as conn:
        key = departments.add_synonym(conn, department_id, name)
        audit.record(conn, actor, "department.synonym.add", "department", department_id, detail={"name": name})
        return key


def _remove_synonym(engine: sa.Engine, actor: Actor, department_id: int, name: str) -> None:
    with engine.begin() as conn:
        departments.remove_synonym(conn, department_id, name)
        audit.record(conn, actor, "department.synonym.remove", "department", department_id, detail={"name": name})


def _set_heads(engine: sa.Engine, actor: Actor, department_id: int, user_ids: list[int]) -> None:
    with engine.begin() as conn:
        departments.set_heads(conn, department_id, user_ids)
        audit.record(conn, actor, "department.heads.set", "department", department_id, detail={"user_ids": user_ids})


def _department(engine: sa.Engine, department_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        return departments.get_department(conn, department_id)


def _resolve(engine: sa.Engine, name: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        found = departments.resolve(conn, name)
        return None if found is None else departments.get_department(conn, found)


# ---- JSON API: departments ----------------------------------------------------------------------
def _department_out(d: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": d["id"], "code": d["code"], "name": d["name"], "name_zh": d["name_zh"],
            "synonyms": [s["display"] for s in d["synonyms"]], "active_experts": d["active_experts"],
            "heads": d["heads"]}


@routes.get("/api/v1/departments")
async def api_departments(request: web.Request) -> web.Response:
    await require(request)
    rows = await in_thread(request, all_departments)
    return web.json_response({"departments": [_department_out(d) for d in rows]})


@routes.get("/api/v1/departments/resolve")
async def api_resolve_department(request: web.Request) -> web.Response:
    await require(request)
    name = request.query.get("name", "")
    if not name.strip():
        raise ParamError("name", "missing", "a department name or synonym, e.g. 心内科")
    found = await in_thread(request, _resolve, name)
    if found is None:
        return json_error(404, f"{name!r} is not a known department or synonym")
    return web.json_response(_department_out(found))


async def _department_answer(request: web.Request, department_id: int, status: int = 200) -> web.Response:
    found = await api_call(request, _department, department_id)
    if found is None:
        return json_error(404, f"no department {department_id}")
    return web.json_response(_department_out(found), status=status)


@routes.post("/api/v1/departments")
async def api_create_department(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    department_id = await api_call(request, _create_department, actor, await json_body(request))
    return await _department_answer(request, department_id, 201)


@routes.post("/api/v1/departments/{department_id:\\d+}/synonyms")
async def api_add_synonym(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    department_id = int(request.match_info["department_id"])
    body = await json_body(request)
    await api_call(request, _add_synonym, actor, department_id, str(body.get("name") or ""))
    return await _department_answer(request, department_id, 201)


@routes.delete("/api/v1/departments/{department_id:\\d+}/synonyms")
async def api_remove_synonym(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    department_id = int(request.match_info["department_id"])
    await api_call(request, _remove_synonym, actor, department_id, request.query.get("name", ""))
    return await _department_answer(request, department_id)


@routes.put("/api/v1/departments/{department_id:\\d+}/heads")
async def api_set_heads(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    department_id = int(request.match_info["department_id"])
    user_ids = (await json_body(request)).get("user_ids")
    if not isinstance(user_ids, list) or not all(isinstance(u, int) and not isinstance(u, bool) for u in user_ids):
        return json_error(400, "user_ids: expected a list of user ids", field="user_ids")
    await api_call(request, _set_heads, actor, department_id, user_ids)
    return await _department_answer(request, department_id)


# ---- the page ---------------------------------------------------------------------------------
@routes.get("/departments")
async def departments_page(request: web.Request) -> web.Response:
    actor = await require(request)
    rows = await in_thread(request, all_departments)
    heads = await in_thread(request, _department_heads) if is_manager(actor) else []
    return html.response(pages.departments_page(actor, rows, can_manage=is_manager(actor), heads=heads))


async def _department_form(request: web.Request, actor: Actor, fn: Callable[..., Any], *args: Any) -> web.Response:
    """A change from the departments page: back to it, or the page with the problem."""
    try:
        await in_thread(request, fn, actor, *args)
    except DepartmentError as exc:
        rows = await in_thread(request, all_departments)
        heads = await in_thread(request, _department_heads)
        page = pages.departments_page(actor, rows, can_manage=True, heads=heads, error=str(exc))
        return html.response(page, status=400)
    raise web.HTTPSeeOther("/departments")


@routes.post("/departments")
async def create_department_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    form = await request.post()
    return await _department_form(request, actor, _create_department, {k: str(v) for k, v in form.items()})


@routes.post("/departments/{department_id:\\d+}/synonyms")
async def add_synonym_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    form = await request.post()
    return await _department_form(request, actor, _add_synonym, int(request.match_info["department_id"]),
                                  str(form.get("name", "")))


@routes.post("/departments/{department_id:\\d+}/heads")
async def set_heads_form(request: web.Request) -> web.Response:
    actor = await require(request, *MANAGERS)
    form = await request.post()
    user_ids = [int(str(v)) for v in form.getall("user_id", []) if str(v).isdigit()]
    return await _department_form(request, actor, _set_heads, int(request.match_info["department_id"]), user_ids)


# ---- OpenAPI ------------------------------------------------------------------------------------
DEPARTMENT_FIELDS: dict[str, Any] = {"id": {"type": "integer"}, "code": {"type": "string"},
                                      "name": {"type": "string"}, "name_zh": {"type": "string"}}
_DEPARTMENT = {"type": "object", "properties": {
    **DEPARTMENT_FIELDS, "synonyms": {"type": "array", "items": {"type": "string"}},
    "active_experts": {"type": "integer"},
    "heads": {"type": "array", "items": {"type": "object", "properties": {
        "user_id": {"type": "integer"}, "username": {"type": "string"}, "display_name": {"type": "string"}}}}}}
_DEPARTMENT_ID = openapi.path_param("department_id", "The department", {"type": "integer"})
_NOT_FOUND = openapi.ok(openapi.ERROR, "No such department")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/departments": {
        "get": {"summary": "The department taxonomy: each department with every name it goes by",
                "responses": {"200": openapi.ok({"type": "object", "properties": {
                    "departments": {"type": "array", "items": _DEPARTMENT}}}), **AUTH}},
        "post": {"summary": "Add a department (coordinators); audited",
                 "requestBody": openapi.json_body({"type": "object", "required": ["code", "name"], "properties": {
                     "code": {"type": "string"}, "name": {"type": "string"}, "name_zh": {"type": "string"}}}),
                 "responses": {"201": openapi.ok(_DEPARTMENT, "Created"), "400": FIELD_ERROR, **AUTH}}},
    "/api/v1/departments/resolve": {"get": {
        "summary": "The department a name means (any synonym, Chinese or English, any case or width)",
        "parameters": [{**openapi.param("name", "e.g. 心脏内科 or 'Dept. of Cardiology'"), "required": True}],
        "responses": {"200": openapi.ok(_DEPARTMENT), "404": _NOT_FOUND, "400": openapi.bad_request(), **AUTH}}},
    "/api/v1/departments/{department_id}/synonyms": {
        "post": {"summary": "Another name for the department (coordinators); one name means one department; audited",
                 "parameters": [_DEPARTMENT_ID],
                 "requestBody": openapi.json_body({"type": "object", "required": ["name"],
                                                   "properties": {"name": {"type": "string"}}}),
                 "responses": {"201": openapi.ok(_DEPARTMENT, "Added"), "400": FIELD_ERROR, "404": _NOT_FOUND,
                               **AUTH}},
        "delete": {"summary": "Forget a name of the department (not its own names); audited",
                   "parameters": [_DEPARTMENT_ID, {**openapi.param("name", "The name to forget"), "required": True}],
                   "responses": {"200": openapi.ok(_DEPARTMENT), "400": FIELD_ERROR, "404": _NOT_FOUND, **AUTH}}},
    "/api/v1/departments/{department_id}/heads": {"put": {
        "summary": "Set the department's heads (users with the role department_head); audited",
        "parameters": [_DEPARTMENT_ID],
        "requestBody": openapi.json_body({"type": "object", "required": ["user_ids"], "properties": {
            "user_ids": {"type": "array", "items": {"type": "integer"}}}}),
        "responses": {"200": openapi.ok(_DEPARTMENT), "400": FIELD_ERROR, "404": _NOT_FOUND, **AUTH}}},
}
