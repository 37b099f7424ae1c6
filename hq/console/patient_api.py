"""What the patient handlers share: access to a patient checked and turned into 404/403, the patient's JSON shape
and its OpenAPI schema, and the roles that may register, upload and merge.

No routes here: `hq.console.patients` (search, registration, timeline), `patient_imaging`, `patient_merges`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web

from hq import openapi, records
from hq.auth import Actor, Role, forbidden
from hq.clock import iso_from_ms

T = TypeVar("T")

REGISTRARS = (Role.COORDINATOR, Role.CLINIC_STAFF)  # register patients, upload imaging (admin implied)
MERGERS = (Role.COORDINATOR,)  # merge and undo: chain-wide decisions (admin implied)


class NotFound(Exception):
    """No such patient (or attachment): a 404 naming it."""


class Denied(Exception):
    """The actor may not see or change it: a 403 saying why."""


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def json_error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


def not_found(request: web.Request, message: str) -> web.HTTPException:
    if request.path.startswith("/api/"):
        return web.HTTPNotFound(text=json.dumps({"error": message}), content_type="application/json")
    return web.HTTPNotFound(text=message)


async def guarded(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in a thread; NotFound -> 404, Denied -> 403, naming what was refused."""
    try:
        return await in_thread(fn, *args)
    except NotFound as exc:
        raise not_found(request, str(exc)) from None
    except Denied as exc:
        raise forbidden(request, str(exc)) from None


def audit_clinic(actor: Actor) -> str | None:
    return None if actor.sees_all_clinics else actor.clinic_id


def check_access(conn: sa.Connection, actor: Actor, patient_id: int) -> int:
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


def merge_json(m: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": m["id"], "survivor_id": m["survivor_id"], "merged_id": m["merged_id"],
            "merged_name": m.get("merged_name"), "reason": m["reason"], "at": iso_from_ms(m["at_ms"]),
            "undone": iso_from_ms(m["undone_ms"]), "moved": m["moved"]}


# ---- OpenAPI schemas -------------------------------------------------------------------------------
IDENTIFIER_SCHEMA = {"type": "object", "properties": {
    "clinic_id": {"type": "string"}, "clinic": {"type": "string"},
    "mrn": {"type": "string", "description": "The clinic's record number; what its devices send as the patient id"}}}

PATIENT_SCHEMA = {"type": "object", "properties": {
    "patient_id": {"type": "integer"}, "name": {"type": "string"}, "family_name": {"type": ["string", "null"]},
    "given_name": {"type": ["string", "null"]},
    "alt_name": {"type": ["string", "null"], "description": "The name in another script (e.g. pinyin)"},
    "sex": {"enum": ["female", "male", "other", "unknown", None]},
    "birth_date": {"type": ["string", "null"], "format": "date"}, "national_id": {"type": ["string", "null"]},
    "phone": {"type": ["string", "null"]}, "origin": {"enum": ["console", "checkin", "device", "import"]},
    "merged_into_id": {"type": ["integer", "null"]}, "identifiers": {"type": "array", "items": IDENTIFIER_SCHEMA},
    "created": {"type": "string", "format": "date-time"}, "updated": {"type": "string", "format": "date-time"},
    "link": {"type": "string"}, "fhir": {"type": "string"}}}

MERGE_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "integer"}, "survivor_id": {"type": "integer"}, "merged_id": {"type": "integer"},
    "reason": {"type": ["string", "null"]}, "at": {"type": "string"}, "undone": {"type": ["string", "null"]},
    "moved": {"type": "object", "description": "Row ids per table that moved, fields filled in, the national id"}}}

ERRORS = {"401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN}

FIELD_ERROR = openapi.ok(openapi.ERROR, "A field is wrong; `field` names it")

PATIENT_ID_PARAM = openapi.path_param("patient_id", "The HQ patient id (a merged-away id answers for its survivor)",
                                      {"type": "integer"})
