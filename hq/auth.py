"""Who is asking: the console's login, sessions by secure cookie with CSRF protection, API tokens, and
`require(request, *roles)` that every handler of protected data calls first.

Roles and their reach: admin (everything), coordinator (the whole chain's operations), department head
(their departments' experts and approvals), expert (their own consultations), clinic staff (their clinic).
Scoping rows by role is done by the domain modules with `Actor`; accounts themselves are in `hq.accounts`.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from aiohttp import web

from hq import accounts, audit
from hq.appkeys import CONFIG, ENGINE

log = logging.getLogger(__name__)

SESSION_COOKIE = "hq_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The largest multipart body read whole to find its csrf_token field; a larger upload (a DICOM file, a CSV import)
# or one of unknown length must send the X-CSRF-Token header, so the check never holds a file in memory and the
# handler still gets the body to stream.
CSRF_FORM_MAX_BYTES = 1024**2
_ACTOR_KEY: web.RequestKey[Actor | None] = web.RequestKey("actor")

routes = web.RouteTableDef()


class Role(enum.StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    DEPARTMENT_HEAD = "department_head"
    EXPERT = "expert"
    CLINIC_STAFF = "clinic_staff"


STAFF_ROLES = (Role.ADMIN, Role.COORDINATOR, Role.DEPARTMENT_HEAD)  # see the whole chain


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: int
    username: str
    display_name: str
    role: Role
    clinic_id: str | None = None  # clinic staff: the one clinic they see
    expert_id: int | None = None  # experts: their directory entry
    department_ids: frozenset[int] = frozenset()  # department heads: what they head
    session_id: str | None = None  # None for API tokens
    csrf_token: str | None = None

    @property
    def label(self) -> str:
        return f"user:{self.username}"

    @property
    def sees_all_clinics(self) -> bool:
        return self.role in STAFF_ROLES

    def may_see_clinic(self, clinic_id: str | None) -> bool:
        """Clinic-owned data (patients, gateways, consultations by clinic): staff see their clinic only.
        Experts' reach is per consultation and decided by the consultation rules, not here."""
        if self.sees_all_clinics:
            return True
        return self.role is Role.CLINIC_STAFF and clinic_id is not None and clinic_id == self.clinic_id

    @classmethod
    def of(cls, identity: accounts.Identity) -> Actor:
        return cls(identity.user_id, identity.username, identity.display_name, Role(identity.role),
                   identity.clinic_id, identity.expert_id, identity.department_ids, identity.session_id,
                   identity.csrf_token)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/ws" or "application/json" in request.headers.get(
        "Accept", "")


def _unauthorized(request: web.Request) -> web.HTTPException:
    if _wants_json(request):
        return web.HTTPUnauthorized(text='{"error": "not logged in: log in or send Authorization: Bearer <token>"}',
                                    content_type="application/json")
    return web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")


def forbidden(request: web.Request, why: str) -> web.HTTPException:
    if _wants_json(request):
        return web.HTTPForbidden(text=f'{{"error": "forbidden: {why}"}}', content_type="application/json")
    return web.HTTPForbidden(text=f"Forbidden: {why}")


async def current_actor(request: web.Request) -> Actor | None:
    """The logged-in actor, or None. Looked up once per request."""
    if _ACTOR_KEY in request:
        found: Actor | None = request[_ACTOR_KEY]
        return found
    engine, idle_s = request.app[ENGINE], request.app[CONFIG].auth.session_idle_s
    header = request.headers.get("Authorization", "")
    identity: accounts.Identity | None = None
    if header.startswith("Bearer "):
        token = header.removeprefix("Bearer ").strip()
        identity = await asyncio.to_thread(_in_transaction, engine, accounts.token_identity, token)
    elif (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
        identity = await asyncio.to_thread(_in_transaction, engine, accounts.session_identity, cookie, idle_s=idle_s)
    actor = None if identity is None else Actor.of(identity)
    request[_ACTOR_KEY] = actor
    return actor


def _in_transaction(engine: sa.Engine, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with engine.begin() as conn:
        return fn(conn, *args, **kwargs)


async def require(request: web.Request, *roles: Role) -> Actor:
    """The actor, if logged in with one of `roles` (admin always passes; no roles: any logged-in user).

    Raises 401/redirect to /login when not logged in, 403 for another role, and 403 for a cookie-authenticated
    unsafe request without the session's CSRF token or from another origin.
    """
    actor = await current_actor(request)
    if actor is None:
        raise _unauthorized(request)
    if request.method in UNSAFE_METHODS and actor.session_id is not None:
        await _check_csrf(request, actor)
    if roles and actor.role is not Role.ADMIN and actor.role not in roles:
        raise forbidden(request, f"role {actor.role} may not do this (needs {' or '.join(roles)})")
    return actor


async def _check_csrf(request: web.Request, actor: Actor) -> None:
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
        raise forbidden(request, f"request from another origin ({origin})")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type == "multipart/form-data" and not _small(request):
        raise forbidden(request, f"missing CSRF token: an upload larger than {CSRF_FORM_MAX_BYTES // 1024**2} MiB "
                                 f"(or of unknown length) must send the {CSRF_HEADER} header of this session")
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # a small body: urlencoded ones are bounded by aiohttp's client_max_size
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else None
    if not sent or actor.csrf_token is None or not hmac.compare_digest(sent, actor.csrf_token):
        raise forbidden(request, f"missing or wrong CSRF token (send the {CSRF_HEADER} header or the "
                                 f"{CSRF_FIELD} form field of this session)")


def _small(request: web.Request) -> bool:
    length = request.content_length
    return length is not None and length <= CSRF_FORM_MAX_BYTES


OPERATIONS = (Role.COORDINATOR, Role.DEPARTMENT_HEAD, Role.CLINIC_STAFF)  # fleet and vitals (admin implied)


def clinic_scope(request: web.Request, actor: Actor, asked: str | None) -> str | None:
    """The clinic a query must be limited to: the one asked for, or for clinic staff their own (asking for
    another clinic is refused). None: every clinic."""
    if actor.sees_all_clinics:
        return asked
    if actor.role is not Role.CLINIC_STAFF:
        raise forbidden(request, f"role {actor.role} has no access to clinic data")
    if asked is not None and asked != actor.clinic_id:
        raise forbidden(request, f"clinic staff see their own clinic ({actor.clinic_id}) only")
    return actor.clinic_id


# ---- login and logout ---------------------------------------------------------------------------
def client_ip(request: web.Request) -> str:
    return request.remote or "unknown"


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    ok: bool
    message: str = ""
    token: str | None = None
    retry_after_s: int | None = None


def attempt_login(engine: sa.Engine, username: str, password: str, *, ip: str, user_agent: str | None,
                  config: Any) -> LoginOutcome:
    """One login attempt, throttled per user name and per address, audited either way (sync: in a thread)."""
    name = username.strip().lower()[:64]
    with engine.begin() as conn:
        by_user, by_ip = accounts.recent_failures(conn, username=name, ip=ip, window_s=config.login_window_s)
        if by_user >= config.login_attempts or by_ip >= config.login_attempts_per_ip:
            audit.record(conn, "anonymous", "login.throttled", "user", name, detail={"ip": ip})
            return LoginOutcome(False, "Too many failed logins. Wait a few minutes, then try again.",
                                retry_after_s=config.login_window_s)
        user = accounts.user_by_name(conn, name)
        good = accounts.password_matches(user["password_hash"] if user else None, password)
        if user is None or not good or not user["active"]:
            accounts.note_failure(conn, username=name, ip=ip, window_s=config.login_window_s)
            audit.record(conn, "anonymous", "login.failed", "user", name,
                         detail={"ip": ip, "reason": "inactive" if user and good else "bad credentials"})
            return LoginOutcome(False, "Wrong user name or password, or the account is deactivated.")
        accounts.clear_failures(conn, name)
        token, _csrf = accounts.open_session(conn, user["id"], max_s=config.session_max_s, ip=ip,
                                             user_agent=user_agent)
        audit.record(conn, _Who(user["id"], f"user:{name}"), "login", "user", user["id"], detail={"ip": ip})
        return LoginOutcome(True, token=token)


@dataclass(frozen=True, slots=True)
class _Who:
    user_id: int | None
    label: str


def set_session_cookie(response: web.StreamResponse, token: str, config: Any) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=config.session_max_s, httponly=True, samesite="Lax",
                        secure=config.secure_cookies, path="/")


def safe_next(target: str | None) -> str:
    """Only a path on this site: an attacker's link must not bounce a fresh login to their site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    from hq.console import html

    return html.response(html.login_page(safe_next(request.query.get("next")), error=None))


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    from hq.console import html

    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
        raise forbidden(request, f"login from another origin ({origin})")
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")))
    config = request.app[CONFIG].auth
    outcome = await asyncio.to_thread(attempt_login, request.app[ENGINE], username, password, ip=client_ip(request),
                                      user_agent=request.headers.get("User-Agent"), config=config)
    if not outcome.ok:
        status = 429 if outcome.retry_after_s else 401
        response = html.response(html.login_page(target, error=outcome.message), status=status)
        if outcome.retry_after_s:
            response.headers["Retry-After"] = str(outcome.retry_after_s)
        return response
    assert outcome.token is not None
    response = web.HTTPSeeOther(target)
    set_session_cookie(response, outcome.token, config)
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    actor = await require(request)
    cookie = request.cookies.get(SESSION_COOKIE)

    def close() -> None:
        with request.app[ENGINE].begin() as conn:
            if cookie is not None:
                accounts.close_session(conn, cookie)
            audit.record(conn, actor, "logout", "user", actor.user_id)

    await asyncio.to_thread(close)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    actor = await require(request)
    return web.json_response({"user_id": actor.user_id, "username": actor.username,
                              "display_name": actor.display_name, "role": str(actor.role),
                              "clinic_id": actor.clinic_id, "expert_id": actor.expert_id,
                              "department_ids": sorted(actor.department_ids), "csrf_token": actor.csrf_token})


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/me": {"get": {
        "summary": "Who the request is authenticated as: user, role, clinic (staff), expert id, the CSRF token",
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
            "type": "object", "properties": {
                "user_id": {"type": "integer"}, "username": {"type": "string"}, "display_name": {"type": "string"},
                "role": {"enum": [str(r) for r in Role]}, "clinic_id": {"type": ["string", "null"]},
                "expert_id": {"type": ["integer", "null"]},
                "department_ids": {"type": "array", "items": {"type": "integer"}},
                "csrf_token": {"type": ["string", "null"], "description": "Cookie sessions: send it as X-CSRF-Token "
                                                                         "with unsafe requests"}}}}}},
                      "401": {"description": "Not logged in"}}}},
}
