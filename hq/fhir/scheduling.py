"""FHIR R4 Schedule, Slot and Appointment: each expert's schedule, its slots (free, busy, tentative, or taken
away by leave and clinic duty) and the appointments booked in them, read and searched under /api/v1/fhir.

Building the resources is pure (`schedule_resource`, `slot_resource`, `appointment_resource`); the handlers read
through `hq.scheduling` and `hq.booking` and scope appointments like the JSON API (reading them is audited).
Ids: Schedule/{expert id}, Practitioner/{expert id}, Slot/{expert id}-{start minute}-{end minute} (Unix minutes,
UTC), Appointment/{appointment id}, Patient/{patient id}.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, booking, openapi, scheduling, slots
from hq.appkeys import ENGINE
from hq.auth import Actor, Role, require
from hq.clock import now_ms
from hq.fhir import common
from hq.fhir.common import SearchError
from hq.models import appointments, departments, experts

routes = web.RouteTableDef()

ANYONE = (Role.COORDINATOR, Role.DEPARTMENT_HEAD, Role.EXPERT, Role.CLINIC_STAFF)
SYSTEM_CLINIC = "urn:clinic-edge:clinic"
SYSTEM_APPOINTMENT = f"{common.SYSTEM_HQ_ID}:appointment"
SYSTEM_CONSULTATION = "urn:clinic-edge:consultation"
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
HORIZON_DAYS = 28
MAX_SLOT_DAYS = 31
MAX_RESULTS = 1000
APPOINTMENT_STATUS = {"booked": "booked", "pending_approval": "pending", "rejected": "cancelled",
                      "cancelled": "cancelled"}
PARTICIPANT_STATUS = {"booked": "accepted", "pending_approval": "tentative", "rejected": "declined",
                      "cancelled": "declined"}
_SLOT_ID = re.compile(r"(\d+)-(\d+)-(\d+)")
_PREFIXES = ("ge", "gt", "le", "lt", "eq")


# ---- resources (pure) ---------------------------------------------------------------------------
def slot_id(expert_id: int, start_ms: int, end_ms: int) -> str:
    return f"{expert_id}-{start_ms // slots.MINUTE_MS}-{end_ms // slots.MINUTE_MS}"


def parse_slot_id(text: str) -> tuple[int, int, int] | None:
    match = _SLOT_ID.fullmatch(text)
    if match is None:
        return None
    expert_id, start, end = (int(g) for g in match.groups())
    return (expert_id, start * slots.MINUTE_MS, end * slots.MINUTE_MS) if end > start else None


def _specialty(department: Mapping[str, Any]) -> dict[str, Any]:
    return {"coding": [{"system": common.SYSTEM_DEPARTMENT, "code": department["code"], "display": department["name"]}],
            "text": department["name"]}


def schedule_resource(expert: Mapping[str, Any], department: Mapping[str, Any], rules: Sequence[slots.WeeklyRule],
                      *, now: int) -> dict[str, Any]:
    hours = "; ".join(slots.describe(r) for r in rules) or "no weekly hours published"
    return {
        "resourceType": "Schedule", "id": str(expert["id"]),
        "identifier": [{"system": f"{common.SYSTEM_HQ_ID}:schedule", "value": str(expert["id"])}],
        "active": bool(expert["active"]),
        "specialty": [_specialty(department)],
        "actor": [{**common.reference("Practitioner", expert["id"]), "display": expert["name"]}],
        "planningHorizon": {"start": common.instant(now),
                            "end": common.instant(now + HORIZON_DAYS * 86_400_000)},
        "comment": f"Weekly availability in {expert['time_zone']}: {hours}",
    }


def slot_resource(expert_id: int, start_ms: int, end_ms: int, status: str, comment: str | None = None
                  ) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Slot", "id": slot_id(expert_id, start_ms, end_ms),
        "schedule": common.reference("Schedule", expert_id), "status": status,
        "start": common.instant(start_ms), "end": common.instant(end_ms)}
    if comment:
        resource["comment"] = comment
    return resource


def appointment_resource(row: Mapping[str, Any], department_code: str) -> dict[str, Any]:
    status = row["status"]
    participants: list[dict[str, Any]] = [
        {"actor": {**common.reference("Practitioner", row["expert_id"]), "display": row["expert_name"]},
         "required": "required", "status": PARTICIPANT_STATUS[status]},
        {"actor": {"identifier": {"system": SYSTEM_CLINIC, "value": row["clinic_id"]},
                   "display": f"clinic {row['clinic_id']}"},
         "required": "required", "status": "accepted"}]
    if row["patient_id"] is not None:
        participants.insert(1, {"actor": common.reference("Patient", row["patient_id"]), "required": "required",
                                "status": "accepted"})
    identifiers = [{"system": SYSTEM_APPOINTMENT, "value": str(row["id"])}]
    if row["consultation_public_id"]:
        identifiers.append({"system": SYSTEM_CONSULTATION, "value": row["consultation_public_id"]})
    resource: dict[str, Any] = {
        "resourceType": "Appointment", "id": str(row["id"]), "identifier": identifiers,
        "status": APPOINTMENT_STATUS[status],
        "specialty": [_specialty({"code": department_code, "name": row["department_name"]})],
        "start": common.instant(row["start_ms"]), "end": common.instant(row["end_ms"]),
        "minutesDuration": (row["end_ms"] - row["start_ms"]) // slots.MINUTE_MS,
        "created": common.instant(row["created_ms"]), "participant": participants}
    if row["urgent_extra"]:
        resource["priority"] = 1
        resource["appointmentType"] = {"text": "Urgent extra slot outside the published availability"}
    else:
        resource["appointmentType"] = {"coding": [{"system": APPOINTMENT_TYPE, "code": "ROUTINE",
                                                   "display": "Routine appointment"}]}
        resource["slot"] = [common.reference("Slot", slot_id(row["expert_id"], row["start_ms"], row["end_ms"]))]
    if row["reason"]:
        resource["description"] = row["reason"]
    if status == "rejected":
        resource["cancelationReason"] = {"text": f"Urgent extra slot not approved: {row['decision_note'] or ''}"
                                         .rstrip(": ")}
    elif status == "cancelled":
        resource["cancelationReason"] = {"text": row["cancel_reason"] or "Cancelled"}
    return resource


def date_bounds(values: Sequence[str], name: str) -> tuple[int | None, int | None]:
    """FHIR date search values (ge/gt/le/lt/eq prefixes; a date or a date-time with offset) as [lo, hi) ms."""
    lo: int | None = None
    hi: int | None = None
    for value in values:
        prefix = value[:2] if value[:2] in _PREFIXES else "eq"
        text = value[2:] if value[:2] in _PREFIXES else value
        try:
            if "T" in text:
                t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
                if t.tzinfo is None:
                    raise ValueError("no offset")
                start = int(t.timestamp() * 1000)
                end = start + 1
            else:
                d = date.fromisoformat(text)
                start = int(datetime(d.year, d.month, d.day, tzinfo=slots.zone("UTC")).timestamp() * 1000)
                end = start + 86_400_000
        except ValueError:
            raise SearchError(f"{name}={value!r}: expected [ge|gt|le|lt|eq]YYYY-MM-DD or a date-time with offset") \
                from None
        if prefix in ("ge", "eq"):
            lo = start if lo is None else max(lo, start)
        if prefix == "gt":
            lo = end if lo is None else max(lo, end)
        if prefix == "lt":
            hi = start if hi is None else min(hi, start)
        if prefix in ("le", "eq"):
            hi = end if hi is None else min(hi, end)
    return lo, hi


def _reference_id(value: str, resource_type: str, name: str) -> int:
    text = value.removeprefix(f"{resource_type}/")
    if not text.isdigit():
        raise SearchError(f"{name}={value!r}: expected {resource_type}/ID or ID")
    return int(text)


# ---- reading ---------------------------------------------------------------------------------
def _expert_with_department(conn: sa.Connection, expert_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    row = conn.execute(sa.select(experts.c.id, experts.c.name, experts.c.active, experts.c.time_zone,
                                 departments.c.code, departments.c.name.label("department_name"))
                       .join(departments, departments.c.id == experts.c.department_id)
                       .where(experts.c.id == expert_id)).mappings().first()
    if row is None:
        return None
    return dict(row), {"code": row["code"], "name": row["department_name"]}


def _schedules(conn: sa.Connection, expert_ids: Sequence[int] | None, now: int) -> list[dict[str, Any]]:
    q = sa.select(experts.c.id).order_by(experts.c.id).limit(MAX_RESULTS)
    if expert_ids is not None:
        q = q.where(experts.c.id.in_(list(expert_ids)))
    found = []
    for expert_id in conn.execute(q).scalars():
        pair = _expert_with_department(conn, int(expert_id))
        if pair is None:
            continue
        shown = scheduling.availability(conn, int(expert_id), now=now)
        found.append(schedule_resource(pair[0], pair[1], shown["rules"], now=now))
    return found


def _slots(conn: sa.Connection, expert_id: int, from_ms: int, to_ms: int) -> list[dict[str, Any]]:
    """Every published slot starting in the range with its status, and the urgent extra slots booked there."""
    cals = scheduling.calendars(conn, [expert_id], from_ms, to_ms)
    if expert_id not in cals:
        return []
    cal = cals[expert_id]
    a = appointments
    away = slots.Blocked(cal.exceptions)
    held = [dict(r) for r in conn.execute(sa.select(a.c.start_ms, a.c.end_ms, a.c.status, a.c.urgent_extra).where(
        a.c.expert_id == expert_id, a.c.status.in_(scheduling.ACTIVE_STATUSES), a.c.start_ms < to_ms + 86_400_000,
        a.c.end_ms > from_ms - 86_400_000)).mappings()]
    booked = slots.Blocked(slots.Interval(h["start_ms"], h["end_ms"]) for h in held if h["status"] == "booked")
    tentative = slots.Blocked(slots.Interval(h["start_ms"], h["end_ms"]) for h in held if h["status"] != "booked")
    found = []
    for window in slots.windows(cal.rules, cal.tz, from_ms, to_ms):
        for s in slots.window_slots(window):
            if not from_ms <= s.start_ms < to_ms:
                continue
            if booked.overlaps(s.start_ms, s.end_ms):
                status = "busy"
            elif tentative.overlaps(s.start_ms, s.end_ms):
                status = "busy-tentative"
            elif away.overlaps(s.start_ms, s.end_ms):
                status = "busy-unavailable"
            else:
                status = "free"
            found.append(slot_resource(expert_id, s.start_ms, s.end_ms, status))
    for h in held:
        if h["urgent_extra"] and from_ms <= h["start_ms"] < to_ms:
            found.append(slot_resource(expert_id, h["start_ms"], h["end_ms"],
                                       "busy" if h["status"] == "booked" else "busy-tentative",
                                       "urgent extra slot outside the published availability"))
    found.sort(key=lambda r: (r["start"], r["id"]))
    return found


def _appointments(conn: sa.Connection, actor: Actor, *, appointment_id: int | None = None,
                  expert_id: int | None = None, patient_id: int | None = None, statuses: Sequence[str] = (),
                  from_ms: int | None = None, to_ms: int | None = None, limit: int = MAX_RESULTS
                  ) -> list[dict[str, Any]]:
    if appointment_id is not None:
        rows = [booking.visible(conn, actor, appointment_id)]
    else:
        rows = booking.list_appointments(conn, actor, expert_id=expert_id, statuses=statuses, from_ms=from_ms,
                                         to_ms=to_ms, limit=limit)
        if patient_id is not None:
            rows = [r for r in rows if r["patient_id"] == patient_id]
    codes = {int(r.id): str(r.code) for r in conn.execute(sa.select(departments.c.id, departments.c.code))}
    with_patients = [r["id"] for r in rows if r["patient_id"] is not None]
    if with_patients:
        audit.record(conn, actor, "fhir.appointment.read", "appointment",
                     with_patients[0] if len(with_patients) == 1 else None,
                     detail={"appointments": with_patients[:50], "count": len(with_patients)})
    return [appointment_resource(r, codes.get(r["department_id"], "")) for r in rows]


def _run(engine: sa.Engine, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with engine.begin() as conn:
        return fn(conn, *args, **kwargs)


def _bad(message: str) -> web.Response:
    return common.fhir_response(common.operation_outcome("error", "invalid", message), 400)


# ---- handlers ---------------------------------------------------------------------------------
@routes.get("/api/v1/fhir/Schedule")
async def search_schedules(request: web.Request) -> web.Response:
    await require(request, *ANYONE)
    try:
        common.check_params(request.query, ("actor", "_id"))
        ids = [_reference_id(v, "Practitioner", "actor") for v in request.query.getall("actor", [])]
        ids += [_reference_id(v, "Schedule", "_id") for v in request.query.getall("_id", [])]
    except SearchError as exc:
        return _bad(str(exc))
    found = await asyncio.to_thread(_run, request.app[ENGINE], _schedules, ids or None, now_ms())
    return common.fhir_response(common.searchset(found, common.base_url(request)))


@routes.get("/api/v1/fhir/Schedule/{schedule_id}")
async def read_schedule(request: web.Request) -> web.Response:
    await require(request, *ANYONE)
    text = request.match_info["schedule_id"]
    found = await asyncio.to_thread(_run, request.app[ENGINE], _schedules, [int(text)], now_ms()) \
        if text.isdigit() else []
    return common.fhir_response(found[0]) if found else common.not_found("Schedule", text)


@routes.get("/api/v1/fhir/Slot")
async def search_slots(request: web.Request) -> web.Response:
    await require(request, *ANYONE)
    try:
        common.check_params(request.query, ("schedule", "start", "status"))
        schedule = request.query.get("schedule")
        if schedule is None:
            raise SearchError("schedule is required (schedule=Schedule/ID): slots are computed per expert")
        expert_id = _reference_id(schedule, "Schedule", "schedule")
        lo, hi = date_bounds(request.query.getall("start", []), "start")
        now = now_ms()
        lo = now if lo is None else lo
        hi = lo + 7 * 86_400_000 if hi is None else hi
        if not lo < hi <= lo + MAX_SLOT_DAYS * 86_400_000:
            raise SearchError(f"start: the range must be non-empty and at most {MAX_SLOT_DAYS} days")
        statuses = set(request.query.getall("status", []))
    except SearchError as exc:
        return _bad(str(exc))
    found = await asyncio.to_thread(_run, request.app[ENGINE], _slots, expert_id, lo, hi)
    if statuses:
        found = [s for s in found if s["status"] in statuses]
    return common.fhir_response(common.searchset(found, common.base_url(request)))


@routes.get("/api/v1/fhir/Slot/{slot_id}")
async def read_slot(request: web.Request) -> web.Response:
    await require(request, *ANYONE)
    text = request.match_info["slot_id"]
    parsed = parse_slot_id(text)
    if parsed is None:
        return common.not_found("Slot", text)
    expert_id, start_ms, _ = parsed
    found = await asyncio.to_thread(_run, request.app[ENGINE], _slots, expert_id, start_ms, start_ms + 1)
    match = [s for s in found if s["id"] == text]
    return common.fhir_response(match[0]) if match else common.not_found("Slot", text)


@routes.get("/api/v1/fhir/Appointment")
async def search_appointments(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    q = request.query
    try:
        common.check_params(request.query, ("practitioner", "patient", "date", "status", "_count"))
        expert = q.get("practitioner")
        patient = q.get("patient")
        lo, hi = date_bounds(q.getall("date", []), "date")
        wanted = [s for v in q.getall("status", []) for s in v.split(",")]
        statuses = [ours for ours, theirs in APPOINTMENT_STATUS.items() if theirs in wanted]
        if wanted and not statuses:
            raise SearchError(f"status={','.join(wanted)}: expected booked, pending or cancelled")
        count = q.get("_count", str(MAX_RESULTS))
        if not count.isdigit() or not 1 <= int(count) <= MAX_RESULTS:
            raise SearchError(f"_count={count!r}: expected 1 to {MAX_RESULTS}")
        args = {"expert_id": None if expert is None else _reference_id(expert, "Practitioner", "practitioner"),
                "patient_id": None if patient is None else _reference_id(patient, "Patient", "patient"),
                "statuses": statuses, "from_ms": lo, "to_ms": hi, "limit": int(count)}
        found = await asyncio.to_thread(_run, request.app[ENGINE], _appointments, actor, **args)
    except SearchError as exc:
        return _bad(str(exc))
    except booking.NotAllowed as exc:
        return common.fhir_response(common.operation_outcome("error", "forbidden", str(exc)), 403)
    return common.fhir_response(common.searchset(found, common.base_url(request)))


@routes.get("/api/v1/fhir/Appointment/{appointment_id}")
async def read_appointment(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    text = request.match_info["appointment_id"]
    if not text.isdigit():
        return common.not_found("Appointment", text)
    try:
        found = await asyncio.to_thread(_run, request.app[ENGINE], _appointments, actor, appointment_id=int(text))
    except booking.NotFound:
        return common.not_found("Appointment", text)
    return common.fhir_response(found[0])


_BUNDLE = {"description": "A FHIR R4 searchset Bundle", "content": {common.FHIR_JSON: {"schema": {"type": "object"}}}}
_RESOURCE = {"description": "A FHIR R4 resource", "content": {common.FHIR_JSON: {"schema": {"type": "object"}}}}
_OUTCOME = {"description": "OperationOutcome", "content": {common.FHIR_JSON: {"schema": {"type": "object"}}}}


def _read(resource: str, name: str) -> dict[str, Any]:
    return {"get": {"summary": f"FHIR R4 {resource} by id",
                    "parameters": [openapi.path_param(name, f"The {resource}'s id")],
                    "responses": {"200": _RESOURCE, "404": _OUTCOME, "401": openapi.UNAUTHORIZED}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/fhir/Schedule": {"get": {
        "summary": "FHIR R4 Schedules: one per expert (actor Practitioner/{expert id}) with their weekly hours",
        "parameters": [openapi.param("actor", "Practitioner/ID"), openapi.param("_id", "Schedule id")],
        "responses": {"200": _BUNDLE, "400": _OUTCOME, "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/Schedule/{schedule_id}": _read("Schedule", "schedule_id"),
    "/api/v1/fhir/Slot": {"get": {
        "summary": "FHIR R4 Slots of one schedule: free, busy, busy-tentative (an extra slot waiting for approval), "
                   "busy-unavailable (leave, clinic duty)",
        "parameters": [openapi.param("schedule", "Schedule/ID (required)"),
                       openapi.param("start", "ge/gt/le/lt/eq + date or date-time; repeat for a range (default: "
                                              "the next 7 days; at most 31)"),
                       openapi.param("status", "free | busy | busy-tentative | busy-unavailable")],
        "responses": {"200": _BUNDLE, "400": _OUTCOME, "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/Slot/{slot_id}": _read("Slot", "slot_id"),
    "/api/v1/fhir/Appointment": {"get": {
        "summary": "FHIR R4 Appointments the caller may see (scoped as /api/v1/appointments); audited",
        "parameters": [openapi.param("practitioner", "Practitioner/ID"), openapi.param("patient", "Patient/ID"),
                       openapi.param("date", "ge/gt/le/lt/eq + date or date-time"),
                       openapi.param("status", "booked | pending | cancelled (comma-separated)"),
                       openapi.param("_count", f"At most this many (default and maximum {MAX_RESULTS})")],
        "responses": {"200": _BUNDLE, "400": _OUTCOME, "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/Appointment/{appointment_id}": _read("Appointment", "appointment_id"),
}
