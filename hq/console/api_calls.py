"""What the directory's console modules share: running a handler's database work in a thread, and answering
its refusals (a field, a missing row, a role) as the JSON API's 400, 403 and 404 with a JSON body.

Helpers only; the handlers are in `hq.console.experts` and `hq.console.departments`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from aiohttp import web

from hq import experts, openapi
from hq.appkeys import ENGINE
from hq.auth import Actor, Role, forbidden
from hq.departments import DepartmentError
from hq.expert_fields import FieldProblem

MANAGERS = (Role.COORDINATOR,)  # and admins, who pass every check
T = TypeVar("T")


class NotFound(LookupError):
    """Not there, or not for this actor's eyes (another department's expert looks like none)."""


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def raise_json(cls: type[web.HTTPException], body: dict[str, Any]) -> NoReturn:
    raise cls(text=json.dumps(body, ensure_ascii=False), content_type="application/json")


async def api_call(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(engine, *args)` in a thread, its refusals as the API's 400/403/404 answers."""
    try:
        return await in_thread(request, fn, *args)
    except (NotFound, experts.ExpertNotFound, experts.CredentialNotFound) as exc:
        raise_json(web.HTTPNotFound, {"error": str(exc)})
    except FieldProblem as exc:
        raise_json(web.HTTPBadRequest, exc.to_json())
    except DepartmentError as exc:
        cls = web.HTTPNotFound if exc.field == "department_id" else web.HTTPBadRequest
        raise_json(cls, {"error": str(exc), "field": exc.field})
    except PermissionError as exc:
        raise forbidden(request, str(exc)) from None


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "the body is not JSON"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}', content_type="application/json")
    return body


async def in_thread(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, request.app[ENGINE], *args)


def is_manager(actor: Actor) -> bool:
    return actor.role in (Role.ADMIN, Role.COORDINATOR)


AUTH = {"401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN}
FIELD_ERROR = openapi.ok({"type": "object", "properties": {"error": {"type": "string"}, "field": {"type": "string"},
                                                           "expected": {"type": "string"}}},
                         "A field is invalid; the body names it and what was expected")
