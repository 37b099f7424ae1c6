"""Administration: user accounts (create, deactivate, API tokens) and the audit log (browse, export, verify),
as console pages and as the same actions in the JSON API. Admins only.

Rules live in `hq.accounts` and `hq.audit`; this module is thin handlers and their markup.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import accounts, audit, openapi
from hq.appkeys import ENGINE, HUB, SOCKETS
from hq.auth import Actor, Role, require
from hq.clock import iso_from_ms
from hq.console import html
from hq.console.html import e
from hq.console.websocket import LIVE_CLIENT
from hq.models.accounts import ROLES
from hq.query_params import ParamError, parse_instant, parse_limit

routes = web.RouteTableDef()

AUDIT_PARAMETERS = ("actor", "action", "target_type", "target_id", "since", "until", "limit")


def parse_audit_query(params: Mapping[str, str]) -> audit.AuditQuery:
    for name in params:
        if name not in AUDIT_PARAMETERS:
            raise ParamError(name, f"unknown parameter {name!r}", "one of " + ", ".join(AUDIT_PARAMETERS))
    limit = parse_limit(params) if "limit" in params else 200
    return audit.AuditQuery(
        actor=params.get("actor") or None, action=params.get("action") or None,
        target_type=params.get("target_type") or None, target_id=params.get("target_id") or None,
        since_ms=parse_instant(params, "since") if params.get("since") else None,
        until_ms=parse_instant(params, "until") if params.get("until") else None, limit=limit)


def user_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"user_id": row["id"], "username": row["username"], "display_name": row["display_name"],
            "role": row["role"], "clinic_id": row["clinic_id"], "active": bool(row["active"]),
            "created": iso_from_ms(row["created_ms"]), "deactivated": iso_from_ms(row["deactivated_ms"])}


def audit_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "at": iso_from_ms(row["at_ms"]), "actor": row["actor"], "action": row["action"],
            "target_type": row["target_type"], "target_id": row["target_id"], "clinic_id": row["clinic_id"],
            "detail": row["detail"], "hash": row["hash"]}


# ---- the work, in a thread ------------------------------------------------------------------------
def _create_user(engine: sa.Engine, actor: Actor, fields: Mapping[str, Any]) -> dict[str, Any]:
    with engine.begin() as conn:
        user_id = accounts.create_user(
            conn, str(fields.get("username") or ""), str(fields.get("role") or ""),
            display_name=str(fields.get("display_name") or "") or None,
            password=str(fields["password"]) if fields.get("password") else None,
            clinic_id=str(fields.get("clinic_id") or "") or None)
        audit.record(conn, actor, "user.create", "user", user_id,
                     detail={"username": fields.get("username"), "role": fields.get("role"),
                             "clinic_id": fields.get("clinic_id") or None})
        user = accounts.user_by_id(conn, user_id)
        assert user is not None
        return user


def _deactivate(engine: sa.Engine, actor: Actor, user_id: int) -> int:
    with engine.begin() as conn:
        if accounts.user_by_id(conn, user_id) is None:
            raise web.HTTPNotFound(text=f'{{"error": "no user {user_id}"}}', content_type="application/json")
        if user_id == actor.user_id:
            raise accounts.AccountError("user_id: admins cannot deactivate their own account")
        ended = accounts.deactivate_user(conn, user_id)
        audit.record(conn, actor, "user.deactivate", "user", user_id, detail={"sessions_ended": ended})
        return ended


async def _close_user_sockets(app: web.Application, user_id: int) -> None:
    """This worker's WebSockets of the user close now; other workers' within their session check."""
    doomed = {id(c) for c in app[HUB].disconnect_user(user_id)}
    if doomed:
        sockets = app[SOCKETS]
        for ws in [*sockets]:
            if id(ws.get(LIVE_CLIENT)) in doomed:
                await ws.close(message=b"account deactivated")


def _users(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return accounts.list_users(conn)


def _audit_rows(engine: sa.Engine, actor: Actor, query: audit.AuditQuery, *, export: bool) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        rows = audit.find(conn, query)
        # Reading the log is itself recorded; an export especially (it leaves the system).
        asked = {k: v for k, v in dataclasses.asdict(query).items() if v is not None}
        audit.record(conn, actor, "audit.export" if export else "audit.read", "audit_log", None,
                     detail={"rows": len(rows), "query": asked})
        return rows


def _json_error(exc: accounts.AccountError) -> web.Response:
    field = str(exc).split(":", 1)[0].split()[0]
    return web.json_response({"error": str(exc), "field": field}, status=400)


# ---- JSON API -------------------------------------------------------------------------------------
@routes.get("/api/v1/users")
async def api_users(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    rows = await asyncio.to_thread(_users, request.app[ENGINE])
    return web.json_response({"users": [user_json(r) for r in rows]})


@routes.post("/api/v1/users")
async def api_create_user(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the body is not JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    try:
        row = await asyncio.to_thread(_create_user, request.app[ENGINE], actor, body)
    except accounts.AccountError as exc:
        return _json_error(exc)
    return web.json_response(user_json(row), status=201)


@routes.post("/api/v1/users/{user_id:\\d+}/deactivate")
async def api_deactivate(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    user_id = int(request.match_info["user_id"])
    try:
        ended = await asyncio.to_thread(_deactivate, request.app[ENGINE], actor, user_id)
    except accounts.AccountError as exc:
        return _json_error(exc)
    await _close_user_sockets(request.app, user_id)
    return web.json_response({"user_id": user_id, "active": False, "sessions_ended": ended})


@routes.get("/api/v1/audit")
async def api_audit(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    query = parse_audit_query(request.query)
    rows = await asyncio.to_thread(_audit_rows, request.app[ENGINE], actor, query, export=False)
    return web.json_response({"entries": [audit_json(r) for r in rows]})


@routes.get("/api/v1/audit.csv")
async def api_audit_csv(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    query = parse_audit_query(request.query)
    rows = await asyncio.to_thread(_audit_rows, request.app[ENGINE], actor, query, export=True)
    return web.Response(text=audit.to_csv(rows), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'})


@routes.get("/api/v1/audit/verify")
async def api_audit_verify(request: web.Request) -> web.Response:
    await require(request, Role.ADMIN)
    verdict = await asyncio.to_thread(audit.verify, request.app[ENGINE])
    return web.json_response({"ok": verdict.ok, "checked": verdict.checked, "first_bad_id": verdict.first_bad_id,
                              "problem": verdict.problem or None, "message": str(verdict)})


# ---- console pages -------------------------------------------------------------------------------
def users_page(actor: Actor, users: Sequence[Mapping[str, Any]], error: str | None = None) -> str:
    rows = "".join(
        f"<tr data-user=\"{e(u['username'])}\"><td>{e(u['username'])}</td><td>{e(u['display_name'])}</td>"
        f"<td>{e(u['role'])}</td><td>{e(u['clinic_id'] or '')}</td>"
        f"<td class=\"state\">{'active' if u['active'] else 'deactivated'}</td><td>"
        + (f"<form method=\"post\" action=\"/admin/users/{u['id']}/deactivate\">"
           f"<input type=\"hidden\" name=\"csrf_token\" value=\"{e(actor.csrf_token or '')}\">"
           "<button type=\"submit\">Deactivate</button></form>" if u["active"] and u["id"] != actor.user_id else "")
        + "</td></tr>" for u in users)
    options = "".join(f"<option value=\"{e(r)}\">{e(r.replace('_', ' '))}</option>" for r in ROLES)
    problem = f"<p class=\"error\" role=\"alert\">{e(error)}</p>" if error else ""
    body = (
        "<h1>Users</h1>" + problem +
        "<form method=\"post\" action=\"/admin/users\" class=\"inline\" id=\"new-user\">"
        f"<input type=\"hidden\" name=\"csrf_token\" value=\"{e(actor.csrf_token or '')}\">"
        "<label>User name <input name=\"username\" required></label>"
        "<label>Display name <input name=\"display_name\"></label>"
        f"<label>Role <select name=\"role\">{options}</select></label>"
        "<label>Clinic (staff) <input name=\"clinic_id\"></label>"
        "<label>Password <input name=\"password\" type=\"password\" autocomplete=\"new-password\"></label>"
        "<button type=\"submit\">Create</button></form>"
        "<table class=\"list\" id=\"users\"><thead><tr><th>User</th><th>Name</th><th>Role</th><th>Clinic</th>"
        f"<th>State</th><th></th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return html.page("Users", body, page_data={"view": "users"}, actor=actor, current="/admin/users", scripts=())


def audit_page(actor: Actor, rows: Sequence[Mapping[str, Any]], verdict: audit.Verdict,
               params: Mapping[str, str]) -> str:
    items = "".join(
        f"<tr data-id=\"{r['id']}\"><td>{r['id']}</td><td><time>{e(iso_from_ms(r['at_ms']))}</time></td>"
        f"<td>{e(r['actor'])}</td><td>{e(r['action'])}</td><td>{e(r['target_type'] or '')} {e(r['target_id'] or '')}"
        f"</td><td>{e(r['clinic_id'] or '')}</td></tr>" for r in rows)
    fields = "".join(f"<label>{e(name.replace('_', ' '))} <input name=\"{name}\" value=\"{e(params.get(name, ''))}\">"
                     "</label>" for name in ("actor", "action", "target_type", "target_id"))
    state = "intact" if verdict.ok else "broken"
    body = (
        f"<h1>Audit log</h1><p class=\"verdict {state}\" id=\"verdict\">{e(str(verdict))}</p>"
        f"<form method=\"get\" action=\"/audit\" class=\"inline\">{fields}<button type=\"submit\">Filter</button>"
        "<button type=\"submit\" formaction=\"/api/v1/audit.csv\">Export CSV</button></form>"
        "<table class=\"list\" id=\"audit\"><thead><tr><th>#</th><th>Time (UTC)</th><th>Actor</th><th>Action</th>"
        f"<th>Target</th><th>Clinic</th></tr></thead><tbody>{items}</tbody></table>"
    )
    return html.page("Audit log", body, page_data={"view": "audit"}, actor=actor, current="/audit", scripts=())


@routes.get("/admin/users")
async def users(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    rows = await asyncio.to_thread(_users, request.app[ENGINE])
    return html.response(users_page(actor, rows))


@routes.post("/admin/users")
async def create_user_form(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    form = await request.post()
    try:
        await asyncio.to_thread(_create_user, request.app[ENGINE], actor, {k: str(v) for k, v in form.items()})
    except accounts.AccountError as exc:
        rows = await asyncio.to_thread(_users, request.app[ENGINE])
        return html.response(users_page(actor, rows, str(exc)), status=400)
    raise web.HTTPSeeOther("/admin/users")


@routes.post("/admin/users/{user_id:\\d+}/deactivate")
async def deactivate_form(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    user_id = int(request.match_info["user_id"])
    try:
        await asyncio.to_thread(_deactivate, request.app[ENGINE], actor, user_id)
    except accounts.AccountError as exc:
        rows = await asyncio.to_thread(_users, request.app[ENGINE])
        return html.response(users_page(actor, rows, str(exc)), status=400)
    await _close_user_sockets(request.app, user_id)
    raise web.HTTPSeeOther("/admin/users")


@routes.get("/audit")
async def audit_log_page(request: web.Request) -> web.Response:
    actor = await require(request, Role.ADMIN)
    params = {k: v for k, v in request.query.items() if v}
    query = parse_audit_query(params)
    rows = await asyncio.to_thread(_audit_rows, request.app[ENGINE], actor, query, export=False)
    verdict = await asyncio.to_thread(audit.verify, request.app[ENGINE])
    return html.response(audit_page(actor, rows, verdict, params))


_USER = {"type": "object", "properties": {
    "user_id": {"type": "integer"}, "username": {"type": "string"}, "display_name": {"type": "string"},
    "role": {"enum": list(ROLES)}, "clinic_id": {"type": ["string", "null"]}, "active": {"type": "boolean"},
    "created": {"type": "string", "format": "date-time"},
    "deactivated": {"type": ["string", "null"], "format": "date-time"}}}
_ENTRY = {"type": "object", "properties": {
    "id": {"type": "integer", "description": "Position in the chain, from 1"}, "at": {"type": "string"},
    "actor": {"type": "string", "description": "user:NAME, gateway:ID, cli, system or anonymous"},
    "action": {"type": "string"}, "target_type": {"type": ["string", "null"]},
    "target_id": {"type": ["string", "null"]}, "clinic_id": {"type": ["string", "null"]},
    "detail": {"type": ["object", "null"]}, "hash": {"type": "string"}}}
_AUDIT_PARAMS = [openapi.param("actor", "Only this actor"), openapi.param("action", "Only this action"),
                 openapi.param("target_type", "Only this kind of target"),
                 openapi.param("target_id", "Only this target"),
                 openapi.param("since", "At or after; ISO 8601 with offset"),
                 openapi.param("until", "Before; ISO 8601 with offset"),
                 openapi.param("limit", "At most this many, newest first (default 200)", {"type": "integer"})]
_ADMIN_ONLY = {"401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/users": {
        "get": {"summary": "Every console account (admins)",
                "responses": {"200": openapi.ok({"type": "object", "properties": {
                    "users": {"type": "array", "items": _USER}}}), **_ADMIN_ONLY}},
        "post": {"summary": "Create an account (admins); audited",
                 "requestBody": openapi.json_body({"type": "object", "required": ["username", "role"], "properties": {
                     "username": {"type": "string"}, "role": {"enum": list(ROLES)},
                     "display_name": {"type": "string"}, "password": {"type": "string", "minLength": 10},
                     "clinic_id": {"type": "string", "description": "Required for clinic_staff, refused otherwise"}}}),
                 "responses": {"201": openapi.ok(_USER, "Created"),
                               "400": openapi.ok(openapi.ERROR, "A field is invalid; the body names it"),
                               **_ADMIN_ONLY}}},
    "/api/v1/users/{user_id}/deactivate": {"post": {
        "summary": "Deactivate an account: it cannot log in, its sessions, sockets and tokens end now; audited",
        "parameters": [openapi.path_param("user_id", "The account", {"type": "integer"})],
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "user_id": {"type": "integer"}, "active": {"const": False}, "sessions_ended": {"type": "integer"}}}),
            "404": openapi.ok(openapi.ERROR, "No such user"), **_ADMIN_ONLY}}},
    "/api/v1/audit": {"get": {
        "summary": "Audit log entries, newest first (admins); reading the log is itself audited",
        "parameters": _AUDIT_PARAMS,
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "entries": {"type": "array", "items": _ENTRY}}}), "400": openapi.bad_request(), **_ADMIN_ONLY}}},
    "/api/v1/audit.csv": {"get": {
        "summary": "The same entries as CSV, for regulators (admins); the export is audited",
        "parameters": _AUDIT_PARAMS,
        "responses": {"200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
                      **_ADMIN_ONLY}}},
    "/api/v1/audit/verify": {"get": {
        "summary": "Verify the hash chain: the first edited, removed or reordered entry (admins)",
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "ok": {"type": "boolean"}, "checked": {"type": "integer"}, "first_bad_id": {"type": ["integer", "null"]},
            "problem": {"type": ["string", "null"]}, "message": {"type": "string"}}}), **_ADMIN_ONLY}}},
}
