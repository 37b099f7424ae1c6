"""The schedule in the console (/schedule: experts publish their hours, clinics request and book, department
heads approve urgent extra slots) and the same actions in the JSON API (/api/v1/schedule/..., /api/v1/appointments),
documented in `OPENAPI_PATHS`.

Thin handlers: rules are in `hq.scheduling` and `hq.booking`, parsing in `hq.schedule_input`, markup in
`hq.console.schedule_html`. Who may do what: experts publish their own availability (coordinators anyone's),
clinic staff book for their clinic (coordinators for any), heads of the expert's department approve extra slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from gateway import appointment_wire as aw
from hq import audit, booking, openapi, scheduling, slots
from hq import schedule_input as si
from hq.appkeys import CONFIG, DOWNLINK, ENGINE, HUB
from hq.auth import Actor, Role, require
from hq.clock import iso_from_ms, now_ms
from hq.console import html
from hq.console import schedule_html as pages
from hq.query_params import ParamError, parse_instant

routes = web.RouteTableDef()

ANYONE = (Role.COORDINATOR, Role.DEPARTMENT_HEAD, Role.EXPERT, Role.CLINIC_STAFF)
BOOKERS = (Role.COORDINATOR, Role.CLINIC_STAFF)
ASKERS = (Role.COORDINATOR, Role.CLINIC_STAFF, Role.DEPARTMENT_HEAD)
FAILURES = (booking.BookingError, scheduling.ScheduleError, si.InputError, slots.RuleError)
RECENT_MS = 86_400_000  # the overview also shows what ended within the last day
MAX_SLOT_RANGE_DAYS = 60
MOVES_SHOWN = 6


# ---- plumbing ---------------------------------------------------------------------------------
def _tx(engine: sa.Engine, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with engine.begin() as conn:
        return fn(conn, *args, **kwargs)


async def _run(request: web.Request, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(_tx, request.app[ENGINE], fn, *args, **kwargs)


def _after(request: web.Request, change: booking.Change) -> None:
    change.announce(request.app[HUB])
    if change.notices and DOWNLINK in request.app:
        request.app[DOWNLINK].wake()


def _failure(exc: Exception) -> web.Response:
    return web.json_response({"error": str(exc), "field": getattr(exc, "field", None)},
                             status=getattr(exc, "status", 400))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise si.InputError("the body is not JSON", "body") from None
    if not isinstance(body, dict):
        raise si.InputError("the body must be a JSON object", "body")
    return body


async def _form(request: web.Request) -> dict[str, str]:
    return {k: str(v) for k, v in (await request.post()).items() if k != "csrf_token"}


def _config(request: web.Request) -> Any:
    return request.app[CONFIG].scheduling


def _id(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


def proposal_json(p: Mapping[str, Any]) -> dict[str, Any]:
    x = p["expert"]
    return {"expert": {"expert_id": x["id"], "name": x["name"], "title": x["title"], "hospital": x["hospital"],
                       "department_id": x["department_id"], "time_zone": x["time_zone"]},
            "start": iso_from_ms(p["start_ms"]), "end": iso_from_ms(p["end_ms"]), "start_ms": p["start_ms"],
            "end_ms": p["end_ms"], "expert_local_start": booking.local_text(p["start_ms"], x["time_zone"])}


def exception_json(x: Mapping[str, Any]) -> dict[str, Any]:
    return {"exception_id": x["id"], "kind": x["kind"], "starts": iso_from_ms(x["starts_ms"]),
            "ends": iso_from_ms(x["ends_ms"]), "note": x["note"]}


def _audit_read(conn: sa.Connection, actor: Actor, rows: list[dict[str, Any]], what: str) -> None:
    """Appointments name patients: reading them is audited."""
    with_patients = [r["id"] for r in rows if r["patient_id"] is not None]
    if with_patients:
        audit.record(conn, actor, what, "appointment", with_patients[0] if len(with_patients) == 1 else None,
                     detail={"appointments": with_patients[:50], "count": len(with_patients)})


# ---- the work, in a thread -----------------------------------------------------------------------
def _overview(conn: sa.Connection, actor: Actor, now: int) -> dict[str, Any]:
    depts, people = scheduling.directory(conn)
    rows = booking.list_appointments(conn, actor, from_ms=now - RECENT_MS)
    waiting = booking.list_appointments(conn, actor, statuses=["pending_approval"], from_ms=now) \
        if actor.role in (Role.ADMIN, Role.DEPARTMENT_HEAD) else []
    if actor.role is Role.DEPARTMENT_HEAD:
        waiting = [r for r in waiting if r["department_id"] in actor.department_ids]
    _audit_read(conn, actor, rows, "appointments.read")
    return {"departments": depts, "experts": people, "appointments": rows, "approvals": waiting}


def _proposals(conn: sa.Connection, query: si.ProposalQuery) -> list[dict[str, Any]]:
    department_id = None
    if query.department is not None:
        department_id = scheduling.resolve_department(conn, query.department)
        if department_id is None:
            raise scheduling.ScheduleError(f"no department is called {query.department!r}", "department")
    return scheduling.propose(conn, query.request, department_id=None if query.expert_id else department_id,
                              expert_id=query.expert_id, language=query.language)


def _proposal_query(request: web.Request, params: Mapping[str, str]) -> si.ProposalQuery:
    c = _config(request)
    return si.proposal_query(params, now=now_ms(), days=c.proposal_days, limit=c.proposals,
                             per_expert=c.proposals_per_expert, min_notice_s=c.min_notice_s)


def _appointment_view(conn: sa.Connection, actor: Actor, appointment_id: int, now: int, notice_s: int
                      ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, bool]]:
    row = booking.visible(conn, actor, appointment_id)
    _audit_read(conn, actor, [row], "appointment.read")
    may_change = actor.role in (Role.ADMIN, Role.COORDINATOR) or (
        actor.role is Role.CLINIC_STAFF and row["clinic_id"] == actor.clinic_id)
    allowed = {"may_change": may_change,
               "may_cancel": may_change or (actor.role is Role.EXPERT and actor.expert_id == row["expert_id"]),
               "may_decide": row["department_id"] in actor.department_ids}
    moves: list[dict[str, Any]] = []
    if may_change and row["status"] == "booked" and not row["urgent_extra"]:
        start = now + notice_s * 1000
        request = slots.SlotRequest(start, start + 14 * 86_400_000, limit=MOVES_SHOWN, per_expert=MOVES_SHOWN)
        moves = scheduling.propose(conn, request, expert_id=row["expert_id"])
    return row, moves, allowed


def _availability_doc(conn: sa.Connection, expert_id: int, now: int) -> dict[str, Any]:
    shown = scheduling.availability(conn, expert_id, now=now)
    x = shown["expert"]
    return {"expert": {"expert_id": x["id"], "name": x["name"]}, "time_zone": x["time_zone"],
            "rules": [scheduling.rule_json(r) for r in shown["rules"]],
            "exceptions": [exception_json(e) for e in shown["exceptions"]]}


def _free_slots(conn: sa.Connection, expert_id: int, from_ms: int, to_ms: int) -> list[slots.Slot]:
    cal = scheduling.calendars(conn, [expert_id], from_ms, to_ms)
    if expert_id not in cal:
        raise scheduling.ScheduleError(f"no expert {expert_id} with a usable time zone", "expert_id", status=404)
    return list(slots.free_slots(cal[expert_id], from_ms, to_ms))


# ---- JSON API ------------------------------------------------------------------------------------
@routes.get("/api/v1/schedule")
async def api_overview(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    data = await _run(request, _overview, actor, now_ms())
    doc: dict[str, Any] = {"appointments": [booking.appointment_json(r) for r in data["appointments"]],
                           "approvals": [booking.appointment_json(r) for r in data["approvals"]]}
    if actor.expert_id is not None:
        doc["availability"] = await _run(request, _availability_doc, actor.expert_id, now_ms())
    return web.json_response(doc)


@routes.get("/api/v1/schedule/experts/{expert_id:\\d+}/availability")
async def api_availability(request: web.Request) -> web.Response:
    await require(request, *ANYONE)
    try:
        return web.json_response(await _run(request, _availability_doc, _id(request, "expert_id"), now_ms()))
    except FAILURES as exc:
        return _failure(exc)


@routes.put("/api/v1/schedule/experts/{expert_id:\\d+}/availability")
async def api_publish(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    expert_id = _id(request, "expert_id")
    try:
        body = await _body(request)
        await _run(request, scheduling.publish_rules, actor, expert_id, body.get("rules"))
        return web.json_response(await _run(request, _availability_doc, expert_id, now_ms()))
    except FAILURES as exc:
        return _failure(exc)


@routes.post("/api/v1/schedule/experts/{expert_id:\\d+}/exceptions")
async def api_add_exception(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    try:
        body = await _body(request)
        starts, ends = si.body_instant(body, "starts"), si.body_instant(body, "ends")
        assert starts is not None and ends is not None
        exception_id, clashes = await _run(
            request, scheduling.add_exception, actor, _id(request, "expert_id"), starts_ms=starts, ends_ms=ends,
            kind=si.body_text(body, "kind") or "", note=si.body_text(body, "note"), now=now_ms())
    except FAILURES as exc:
        return _failure(exc)
    return web.json_response({"exception_id": exception_id, "overlapping_appointments": [
        {"appointment_id": c["id"], "start": iso_from_ms(c["start_ms"]), "status": c["status"],
         "clinic_id": c["clinic_id"]} for c in clashes]}, status=201)


@routes.delete("/api/v1/schedule/exceptions/{exception_id:\\d+}")
async def api_remove_exception(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    try:
        expert_id = await _run(request, scheduling.remove_exception, actor, _id(request, "exception_id"))
    except FAILURES as exc:
        return _failure(exc)
    return web.json_response({"removed": _id(request, "exception_id"), "expert_id": expert_id})


@routes.get("/api/v1/schedule/experts/{expert_id:\\d+}/slots")
async def api_slots(request: web.Request) -> web.Response:
    await require(request, *ANYONE)
    now = now_ms()
    from_ms = parse_instant(request.query, "from") or now
    to_ms = parse_instant(request.query, "to") or from_ms + 7 * 86_400_000
    if not from_ms < to_ms <= from_ms + MAX_SLOT_RANGE_DAYS * 86_400_000:
        raise ParamError("to", "the range is empty or longer than 60 days", "a 'to' after 'from', within 60 days")
    try:
        found = await _run(request, _free_slots, _id(request, "expert_id"), from_ms, to_ms)
    except FAILURES as exc:
        return _failure(exc)
    return web.json_response({"slots": [{"start": iso_from_ms(s.start_ms), "end": iso_from_ms(s.end_ms),
                                         "start_ms": s.start_ms, "end_ms": s.end_ms} for s in found]})


@routes.get("/api/v1/schedule/proposals")
async def api_proposals(request: web.Request) -> web.Response:
    await require(request, *ASKERS)
    query = _proposal_query(request, request.query)
    try:
        found = await _run(request, _proposals, query)
    except FAILURES as exc:
        return _failure(exc)
    return web.json_response({"proposals": [proposal_json(p) for p in found],
                              "not_before": iso_from_ms(query.request.not_before_ms),
                              "not_after": iso_from_ms(query.request.not_after_ms)})


@routes.get("/api/v1/appointments")
async def api_appointments(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    q = request.query
    for name in q:
        if name not in ("clinic_id", "expert_id", "status", "from", "to", "limit"):
            raise ParamError(name, f"unknown parameter {name!r}", "clinic_id, expert_id, status, from, to, limit")
    statuses = [s for s in q.get("status", "").split(",") if s]
    bad = [s for s in statuses if s not in aw.STATUSES]
    if bad:
        raise ParamError("status", f"{bad[0]!r} is not a status", ", ".join(aw.STATUSES))
    expert = q.get("expert_id")
    if expert is not None and not expert.isdigit():
        raise ParamError("expert_id", f"{expert!r} is not an expert id", "an integer")
    limit = si.int_param(q, "limit", 200, 1, 1000)

    def read(conn: sa.Connection) -> list[dict[str, Any]]:
        rows = booking.list_appointments(conn, actor, clinic_id=q.get("clinic_id") or None,
                                         expert_id=int(expert) if expert else None, statuses=statuses,
                                         from_ms=parse_instant(q, "from"), to_ms=parse_instant(q, "to"), limit=limit)
        _audit_read(conn, actor, rows, "appointments.read")
        return rows

    try:
        rows = await _run(request, read)
    except FAILURES as exc:
        return _failure(exc)
    return web.json_response({"appointments": [booking.appointment_json(r) for r in rows]})


def _booking_args(body: Mapping[str, Any]) -> dict[str, Any]:
    start = si.body_instant(body, "start")
    end = si.body_instant(body, "end")
    assert start is not None and end is not None
    return {"expert_id": si.body_int(body, "expert_id"), "start_ms": start, "end_ms": end,
            "clinic_id": si.body_text(body, "clinic_id"), "patient_id": si.body_int(body, "patient_id", required=False),
            "mrn": si.body_text(body, "mrn"), "reason": si.body_text(body, "reason")}


@routes.post("/api/v1/appointments")
async def api_book(request: web.Request) -> web.Response:
    actor = await require(request, *BOOKERS)
    try:
        change = await _run(request, booking.book, actor, now=now_ms(), **_booking_args(await _body(request)))
    except FAILURES as exc:
        return _failure(exc)
    _after(request, change)
    return web.json_response(booking.appointment_json(change.appointment), status=201)


@routes.post("/api/v1/appointments/urgent")
async def api_request_extra(request: web.Request) -> web.Response:
    actor = await require(request, *BOOKERS)
    try:
        change = await _run(request, booking.request_extra, actor, now=now_ms(),
                            **_booking_args(await _body(request)))
    except FAILURES as exc:
        return _failure(exc)
    _after(request, change)
    return web.json_response(booking.appointment_json(change.appointment), status=201)


@routes.get("/api/v1/appointments/{appointment_id:\\d+}")
async def api_appointment(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)

    def read(conn: sa.Connection) -> dict[str, Any]:
        row = booking.visible(conn, actor, _id(request, "appointment_id"))
        _audit_read(conn, actor, [row], "appointment.read")
        return row

    try:
        return web.json_response(booking.appointment_json(await _run(request, read)))
    except FAILURES as exc:
        return _failure(exc)


async def _act(request: web.Request, action: str, body: Mapping[str, Any], actor: Actor) -> booking.Change:
    appointment_id, now = _id(request, "appointment_id"), now_ms()
    change: booking.Change
    if action == "cancel":
        change = await _run(request, booking.cancel, actor, appointment_id, now=now,
                            reason=si.body_text(body, "reason"))
    elif action == "reschedule":
        start, end = si.body_instant(body, "start"), si.body_instant(body, "end")
        assert start is not None and end is not None
        change = await _run(request, booking.reschedule, actor, appointment_id, start_ms=start, end_ms=end, now=now)
    else:
        change = await _run(request, booking.decide_extra, actor, appointment_id, approve=action == "approve",
                            now=now, note=si.body_text(body, "note"))
    return change


def _api_action(action: str) -> Callable[[web.Request], Any]:
    roles = (Role.DEPARTMENT_HEAD,) if action in ("approve", "reject") else ANYONE

    async def handler(request: web.Request) -> web.Response:
        actor = await require(request, *roles)
        try:
            change = await _act(request, action, await _body(request), actor)
        except FAILURES as exc:
            return _failure(exc)
        _after(request, change)
        return web.json_response(booking.appointment_json(change.appointment))

    return handler


def _page_action(action: str) -> Callable[[web.Request], Any]:
    roles = (Role.DEPARTMENT_HEAD,) if action in ("approve", "reject") else ANYONE

    async def handler(request: web.Request) -> web.Response:
        actor = await require(request, *roles)
        try:
            change = await _act(request, action, await _form(request), actor)
        except booking.NotFound as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        except FAILURES as exc:
            return await _appointment_response(request, actor, str(exc), getattr(exc, "status", 400))
        _after(request, change)
        raise web.HTTPSeeOther(f"/schedule/appointments/{change.appointment['id']}")

    return handler


ACTIONS = ("cancel", "reschedule", "approve", "reject")
for _name in ACTIONS:  # one route each, so that every one has its own OpenAPI path
    routes.post(f"/api/v1/appointments/{{appointment_id:\\d+}}/{_name}")(_api_action(_name))
    routes.post(f"/schedule/appointments/{{appointment_id:\\d+}}/{_name}")(_page_action(_name))


# ---- console pages ---------------------------------------------------------------------------
@routes.get("/schedule")
async def schedule_page(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    return html.response(pages.schedule_page(actor, await _run(request, _overview, actor, now_ms())))


@routes.get("/schedule/proposals")
async def proposals_page(request: web.Request) -> web.Response:
    actor = await require(request, *ASKERS)
    params = {k: v for k, v in request.query.items() if v}
    depts, people = await _run(request, scheduling.directory)
    try:
        found = await _run(request, _proposals, _proposal_query(request, params))
    except (ParamError, *FAILURES) as exc:
        return html.response(pages.proposals_page(actor, params, [], depts, people, str(exc)), status=400)
    return html.response(pages.proposals_page(actor, params, found, depts, people))


@routes.post("/schedule/book")
async def book_form(request: web.Request) -> web.Response:
    actor = await require(request, *BOOKERS)
    form = await _form(request)
    try:
        change = await _run(request, booking.book, actor, now=now_ms(), **_booking_args(form))
    except FAILURES as exc:
        depts, people = await _run(request, scheduling.directory)
        return html.response(pages.proposals_page(actor, {}, [], depts, people, str(exc)),
                             status=getattr(exc, "status", 400))
    _after(request, change)
    raise web.HTTPSeeOther(f"/schedule/appointments/{change.appointment['id']}")


async def _appointment_response(request: web.Request, actor: Actor, error: str | None = None,
                                status: int = 200) -> web.Response:
    row, moves, allowed = await _run(request, _appointment_view, actor, _id(request, "appointment_id"), now_ms(),
                                     _config(request).min_notice_s)
    return html.response(pages.appointment_page(actor, row, moves, error=error, **allowed), status=status)


@routes.get("/schedule/appointments/{appointment_id:\\d+}")
async def appointment_page(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    try:
        return await _appointment_response(request, actor)
    except booking.NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None


async def _availability_response(request: web.Request, actor: Actor, expert_id: int, *, text: str | None = None,
                                 error: str | None = None, clashes: list[dict[str, Any]] | None = None,
                                 status: int = 200) -> web.Response:
    try:
        shown = await _run(request, scheduling.availability, expert_id, now=now_ms())
    except scheduling.ScheduleError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    body = pages.availability_page(actor, shown["expert"], si.rule_lines(shown["rules"]) if text is None else text,
                                   shown["rules"], shown["exceptions"],
                                   editable=scheduling.may_publish(actor, expert_id), error=error,
                                   clashes=clashes or [])
    return html.response(body, status=status)


@routes.get("/schedule/experts/{expert_id:\\d+}")
async def availability_page(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    return await _availability_response(request, actor, _id(request, "expert_id"))


@routes.post("/schedule/experts/{expert_id:\\d+}/rules")
async def publish_form(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    expert_id, form = _id(request, "expert_id"), await _form(request)
    text = form.get("rules", "")
    try:
        await _run(request, scheduling.publish_rules, actor, expert_id, si.parse_rule_lines(text))
    except FAILURES as exc:
        return await _availability_response(request, actor, expert_id, text=text, error=str(exc),
                                            status=getattr(exc, "status", 400))
    raise web.HTTPSeeOther(f"/schedule/experts/{expert_id}")


@routes.post("/schedule/experts/{expert_id:\\d+}/exceptions")
async def exception_form(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    expert_id, form = _id(request, "expert_id"), await _form(request)

    def add(conn: sa.Connection) -> list[dict[str, Any]]:
        zone = slots.zone(scheduling.availability(conn, expert_id, now=0)["expert"]["time_zone"])
        _, clashes = scheduling.add_exception(
            conn, actor, expert_id, starts_ms=si.local_instant(form.get("starts", ""), zone, "starts"),
            ends_ms=si.local_instant(form.get("ends", ""), zone, "ends"), kind=form.get("kind", ""),
            note=form.get("note"), now=now_ms())
        return clashes

    try:
        clashes = await _run(request, add)
    except FAILURES as exc:
        return await _availability_response(request, actor, expert_id, error=str(exc),
                                            status=getattr(exc, "status", 400))
    if clashes:
        return await _availability_response(request, actor, expert_id, clashes=clashes)
    raise web.HTTPSeeOther(f"/schedule/experts/{expert_id}")


@routes.post("/schedule/exceptions/{exception_id:\\d+}/remove")
async def remove_exception_form(request: web.Request) -> web.Response:
    actor = await require(request, *ANYONE)
    try:
        expert_id = await _run(request, scheduling.remove_exception, actor, _id(request, "exception_id"))
    except scheduling.ScheduleError as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    raise web.HTTPSeeOther(f"/schedule/experts/{expert_id}")


@routes.get("/schedule/extra")
async def extra_page(request: web.Request) -> web.Response:
    actor = await require(request, *BOOKERS)
    _, people = await _run(request, scheduling.directory)
    return html.response(pages.extra_page(actor, people, {k: v for k, v in request.query.items()}))


@routes.post("/schedule/extra")
async def extra_form(request: web.Request) -> web.Response:
    actor = await require(request, *BOOKERS)
    form = await _form(request)
    try:
        zone = si.zone_param(form)
        start = si.local_instant(form.get("start", ""), zone, "start")
        minutes = si.body_int(form, "minutes")
        assert minutes is not None
        change = await _run(request, booking.request_extra, actor, now=now_ms(), start_ms=start,
                            end_ms=start + minutes * slots.MINUTE_MS, reason=form.get("reason"),
                            expert_id=si.body_int(form, "expert_id"), clinic_id=form.get("clinic_id") or None,
                            mrn=form.get("mrn") or None)
    except (ParamError, *FAILURES) as exc:
        _, people = await _run(request, scheduling.directory)
        return html.response(pages.extra_page(actor, people, form, str(exc)), status=getattr(exc, "status", 400))
    _after(request, change)
    raise web.HTTPSeeOther(f"/schedule/appointments/{change.appointment['id']}")


# ---- OpenAPI ---------------------------------------------------------------------------------
_TIME = {"type": ["string", "null"], "format": "date-time"}
_RULE = {"type": "object", "required": ["weekday", "start", "end", "slot_minutes"], "properties": {
    "weekday": {"type": "integer", "minimum": 0, "maximum": 6, "description": "0 Monday .. 6 Sunday, expert's zone"},
    "start": {"type": "string", "pattern": "^\\d{2}:\\d{2}$", "description": "HH:MM in the expert's zone"},
    "end": {"type": "string", "description": "HH:MM (24:00: midnight); before start: the next day"},
    "slot_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "multipleOf": 5},
    "valid_from": {"type": ["string", "null"], "format": "date"},
    "valid_until": {"type": ["string", "null"], "format": "date"},
    "text": {"type": "string", "readOnly": True}}}
_AVAILABILITY = {"type": "object", "properties": {
    "expert": {"type": "object", "properties": {"expert_id": {"type": "integer"}, "name": {"type": "string"}}},
    "time_zone": {"type": "string", "description": "IANA zone the rules are in"},
    "rules": {"type": "array", "items": _RULE},
    "exceptions": {"type": "array", "items": {"type": "object", "properties": {
        "exception_id": {"type": "integer"}, "kind": {"enum": list(scheduling.EXCEPTION_KINDS)},
        "starts": _TIME, "ends": _TIME, "note": {"type": ["string", "null"]}}}}}}
_APPOINTMENT = {"type": "object", "properties": {
    "appointment_id": {"type": "integer"}, "status": {"enum": list(aw.STATUSES)},
    "urgent_extra": {"type": "boolean"},
    "expert": {"type": "object", "properties": {"expert_id": {"type": "integer"}, "name": {"type": "string"},
                                                "time_zone": {"type": "string"}}},
    "department": {"type": "object", "properties": {"department_id": {"type": "integer"}, "name": {"type": "string"}}},
    "clinic_id": {"type": "string"}, "patient_id": {"type": ["integer", "null"]},
    "patient_mrn": {"type": ["string", "null"]},
    "consultation_id": {"type": ["string", "null"], "description": "The consultation's public id, once booked"},
    "start": _TIME, "end": _TIME, "start_ms": {"type": "integer"}, "end_ms": {"type": "integer"},
    "expert_local_start": {"type": "string"}, "reason": {"type": ["string", "null"]},
    "created": _TIME, "confirmed": {**_TIME, "description": "When the clinic's gateway confirmed it has the booking"},
    "reminded": _TIME, "decided": _TIME, "decided_by_user_id": {"type": ["integer", "null"]},
    "decision_note": {"type": ["string", "null"]}, "cancelled": _TIME, "cancel_reason": {"type": ["string", "null"]}}}
_ERRORS = {"400": openapi.ok(openapi.ERROR, "An input is invalid; the body names the field"),
           "401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN}
_BOOKING_BODY = openapi.json_body({"type": "object", "required": ["expert_id", "start", "end"], "properties": {
    "expert_id": {"type": "integer"}, "start": {"type": "string", "format": "date-time"},
    "end": {"type": "string", "format": "date-time"},
    "clinic_id": {"type": "string", "description": "Coordinators: the clinic; clinic staff: theirs (implied)"},
    "patient_id": {"type": "integer"}, "mrn": {"type": "string", "description": "Or the patient's record number"},
    "reason": {"type": "string", "description": "The question (required for an urgent extra slot)"}}})
_ID = openapi.path_param("appointment_id", "The appointment", {"type": "integer"})
_EXPERT = openapi.path_param("expert_id", "The expert", {"type": "integer"})


def _action(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary, "parameters": [_ID], "requestBody": openapi.json_body(body),
                     "responses": {"200": openapi.ok(_APPOINTMENT), **_ERRORS,
                                   "404": openapi.ok(openapi.ERROR, "No such appointment (that you may see)"),
                                   "409": openapi.ok(openapi.ERROR, "Taken meanwhile, or no longer in that state")}}}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/schedule": {"get": {
        "summary": "The schedule as the caller sees it (the /schedule page): appointments from a day ago on, urgent "
                   "extra slots waiting for the caller's approval, and an expert's own availability",
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "appointments": {"type": "array", "items": _APPOINTMENT},
            "approvals": {"type": "array", "items": _APPOINTMENT}, "availability": _AVAILABILITY}}), **_ERRORS}}},
    "/api/v1/schedule/experts/{expert_id}/availability": {
        "get": {"summary": "An expert's weekly hours (in their own time zone) and the leave and clinic duty ahead",
                "parameters": [_EXPERT], "responses": {"200": openapi.ok(_AVAILABILITY), **_ERRORS}},
        "put": {"summary": "Publish an expert's weekly hours, replacing the old (the expert, or a coordinator); "
                           "audited. Booked appointments keep their time.",
                "parameters": [_EXPERT],
                "requestBody": openapi.json_body({"type": "object", "required": ["rules"], "properties": {
                    "rules": {"type": "array", "items": _RULE}}}),
                "responses": {"200": openapi.ok(_AVAILABILITY), **_ERRORS}}},
    "/api/v1/schedule/experts/{expert_id}/exceptions": {"post": {
        "summary": "Add leave or clinic duty (the expert, or a coordinator); audited. Lists the appointments it "
                   "overlaps, which stand until moved or cancelled.",
        "parameters": [_EXPERT],
        "requestBody": openapi.json_body({"type": "object", "required": ["kind", "starts", "ends"], "properties": {
            "kind": {"enum": list(scheduling.EXCEPTION_KINDS)}, "starts": {"type": "string", "format": "date-time"},
            "ends": {"type": "string", "format": "date-time"}, "note": {"type": "string"}}}),
        "responses": {"201": openapi.ok({"type": "object", "properties": {
            "exception_id": {"type": "integer"}, "overlapping_appointments": {"type": "array"}}}, "Added"),
            **_ERRORS}}},
    "/api/v1/schedule/exceptions/{exception_id}": {"delete": {
        "summary": "Remove leave or clinic duty; audited",
        "parameters": [openapi.path_param("exception_id", "The exception", {"type": "integer"})],
        "responses": {"200": openapi.ok({"type": "object"}), "404": openapi.ok(openapi.ERROR, "No such exception"),
                      **_ERRORS}}},
    "/api/v1/schedule/experts/{expert_id}/slots": {"get": {
        "summary": "An expert's free slots starting in a range (default: the next 7 days; at most 60)",
        "parameters": [_EXPERT, openapi.param("from", "ISO 8601 with offset"), openapi.param("to", "ISO 8601")],
        "responses": {"200": openapi.ok({"type": "object", "properties": {"slots": {"type": "array", "items": {
            "type": "object", "properties": {"start": _TIME, "end": _TIME}}}}}), **_ERRORS}}},
    "/api/v1/schedule/proposals": {"get": {
        "summary": "The earliest fitting free slots for a clinic's request, across the department's experts (or for "
                   "one expert)",
        "parameters": [openapi.param("department", "Any name of the department (code, name, synonym)"),
                       openapi.param("expert_id", "Or this expert", {"type": "integer"}),
                       openapi.param("not_before", "ISO 8601 with offset, or a date in tz (default: now + notice)"),
                       openapi.param("days", "How far ahead (default [scheduling] proposal_days, at most 60)",
                                     {"type": "integer"}),
                       openapi.param("minutes", "Slots at least this long", {"type": "integer"}),
                       openapi.param("language", "Experts speaking this language (BCP 47)"),
                       openapi.param("tz", "The clinic's IANA zone, for not_before dates and hours"),
                       openapi.param("hours_start", "The clinic's daily hours, HH:MM in tz"),
                       openapi.param("hours_end", "HH:MM in tz (before hours_start: the next day)"),
                       openapi.param("limit", "At most this many", {"type": "integer"}),
                       openapi.param("per_expert", "At most this many per expert", {"type": "integer"})],
        "responses": {"200": openapi.ok({"type": "object", "properties": {"proposals": {"type": "array"},
                                                                          "not_before": _TIME, "not_after": _TIME}}),
                      **_ERRORS}}},
    "/api/v1/appointments": {
        "get": {"summary": "Appointments the caller may see (clinic staff: their clinic; experts: theirs; department "
                           "heads: their departments'), by start time; reading them is audited",
                "parameters": [openapi.param("clinic_id", "Only this clinic"),
                               openapi.param("expert_id", "Only this expert", {"type": "integer"}),
                               openapi.param("status", "Comma-separated: " + ", ".join(aw.STATUSES)),
                               openapi.param("from", "Ending after this (ISO 8601 with offset)"),
                               openapi.param("to", "Starting before this"),
                               openapi.param("limit", "At most this many (default 200)", {"type": "integer"})],
                "responses": {"200": openapi.ok({"type": "object", "properties": {
                    "appointments": {"type": "array", "items": _APPOINTMENT}}}), **_ERRORS}},
        "post": {"summary": "Book one of an expert's published free slots (clinic staff for their clinic, "
                            "coordinators for any): the appointment, its routine consultation and the confirmation "
                            "to the clinic's gateway; never a double booking; audited",
                 "requestBody": _BOOKING_BODY,
                 "responses": {"201": openapi.ok(_APPOINTMENT, "Booked"), **_ERRORS,
                               "409": openapi.ok(openapi.ERROR, "Someone else booked (part of) that time")}}},
    "/api/v1/appointments/urgent": {"post": {
        "summary": "Ask for an urgent extra slot outside the expert's published availability: it holds the time and "
                   "waits for a head of the expert's department; audited",
        "requestBody": _BOOKING_BODY,
        "responses": {"201": openapi.ok(_APPOINTMENT, "Waiting for approval"), **_ERRORS,
                      "409": openapi.ok(openapi.ERROR, "That time is taken")}}},
    "/api/v1/appointments/{appointment_id}": {"get": {
        "summary": "One appointment (if the caller may see it); audited", "parameters": [_ID],
        "responses": {"200": openapi.ok(_APPOINTMENT), "404": openapi.ok(openapi.ERROR, "Not found"), **_ERRORS}}},
    "/api/v1/appointments/{appointment_id}/cancel": _action(
        "Cancel (the clinic, a coordinator or the expert): the time is free again; the gateway is told; audited",
        {"type": "object", "properties": {"reason": {"type": "string"}}}),
    "/api/v1/appointments/{appointment_id}/reschedule": _action(
        "Move a booked appointment to another published free slot of the same expert; audited",
        {"type": "object", "required": ["start", "end"], "properties": {
            "start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}}),
    "/api/v1/appointments/{appointment_id}/approve": _action(
        "Approve an urgent extra slot (heads of the expert's department only); audited",
        {"type": "object", "properties": {"note": {"type": "string"}}}),
    "/api/v1/appointments/{appointment_id}/reject": _action(
        "Reject an urgent extra slot (heads of the expert's department only): its time is released; audited",
        {"type": "object", "properties": {"note": {"type": "string"}}}),
}
