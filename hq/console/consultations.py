"""Consultations in the console and the JSON API: the list with an expert's live offers and requests (urgent,
routine, emergency), and a consultation's session (accept/decline, stages, chat, short form, advice, report,
rating, adoption, cancel); every page has its JSON twin, described in `OPENAPI_PATHS`.

Thin handlers: the rules are `hq.consultations` and `hq.dispatching`, the markup `hq.console.consultation_html`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from aiohttp import web

from hq import audit, consultations, departments, dispatching, openapi
from hq.after_commit import AfterCommit
from hq.appkeys import CONFIG, ENGINE
from hq.auth import Actor, Role, require
from hq.clock import iso_from_ms, now_ms
from hq.console import consultation_html, html
from hq.consultation_views import FORM_FIELDS, summary
from hq.models import clinics, dispatch_offers, experts
from hq.models import consultations as consultations_table

routes = web.RouteTableDef()
T = TypeVar("T")
REQUESTERS = (Role.COORDINATOR, Role.CLINIC_STAFF)
LIST_LIMIT = 200


_HTTP_ERRORS: dict[int, type[web.HTTPException]] = {400: web.HTTPBadRequest, 403: web.HTTPForbidden,
                                                   404: web.HTTPNotFound, 409: web.HTTPConflict}


def _error(status: int, message: str, field: str | None = None) -> web.HTTPException:
    body = {"error": message, **({"field": field} if field else {})}
    return _HTTP_ERRORS[status](text=json.dumps(body, ensure_ascii=False), content_type="application/json")


async def _work(request: web.Request, work: Callable[[sa.Connection, AfterCommit, int], T]) -> T:
    """`work` in one transaction (in a thread), its rule errors as 4xx, its live and downlink notices after commit."""
    effects = AfterCommit()
    now = now_ms()

    def run() -> T:
        with request.app[ENGINE].begin() as conn:
            return work(conn, effects, now)

    try:
        result = await asyncio.to_thread(run)
    except consultations.ConsultationError as exc:
        raise _error(400, str(exc), str(exc).split(":", 1)[0]) from None
    except consultations.NotAllowed as exc:
        raise _error(403, f"forbidden: {exc}") from None
    except dispatching.DispatchRefused as exc:
        raise _error(409, str(exc)) from None
    except dispatching.Conflict as exc:
        raise _error(409, f"{exc}; try again") from None
    effects.run(request.app)
    return result


def _visible(conn: sa.Connection, actor: Actor, public_id: str, *, offered: bool = False) -> dict[str, Any]:
    """The consultation, if the actor may see it; `offered`: also an expert whose offer has closed (an accept
    that lost the race learns who won, not that the consultation vanished)."""
    row = consultations.get(conn, public_id)
    ever = (offered and row is not None and actor.expert_id is not None
            and consultations.offered_to(conn, row["id"], actor.expert_id) is not None)
    if row is None or not (ever or consultations.may_see(conn, actor, row)):
        raise _error(404, f"no consultation {public_id} (or not one of yours)")
    return row


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _error(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _error(400, "the body must be a JSON object")
    return body


def _config(request: web.Request) -> Any:
    return request.app[CONFIG].consultations


# ---- reading ----------------------------------------------------------------------------------
def list_rows(conn: sa.Connection, actor: Actor, params: dict[str, str], now: int) -> list[dict[str, Any]]:
    c = consultations_table
    q = sa.select(c).order_by(c.c.requested_ms.desc()).limit(LIST_LIMIT)
    if actor.role is Role.CLINIC_STAFF:
        q = q.where(c.c.clinic_id == actor.clinic_id)
    elif actor.role is Role.EXPERT:
        offered = sa.select(dispatch_offers.c.consultation_id).where(
            dispatch_offers.c.expert_id == actor.expert_id, dispatch_offers.c.outcome == "pending")
        q = q.where(sa.or_(c.c.expert_id == actor.expert_id, c.c.id.in_(offered)))
    elif not actor.sees_all_clinics:
        return []
    for name in ("status", "kind", "clinic_id"):
        if params.get(name):
            q = q.where(getattr(c.c, name) == params[name])
    rows = [summary(conn, dict(r), now) for r in conn.execute(q).mappings()]
    audit.record(conn, actor, "consultation.list", "consultation", None, detail={"rows": len(rows), **params})
    return rows


def pending_offers(conn: sa.Connection, actor: Actor, now: int) -> list[dict[str, Any]]:
    if actor.expert_id is None:
        return []
    d, c = dispatch_offers, consultations_table
    rows = conn.execute(sa.select(c, d.c.round.label("offer_round"), d.c.offered_ms, d.c.reasons, d.c.score)
                        .join(d, d.c.consultation_id == c.c.id)
                        .where(d.c.expert_id == actor.expert_id, d.c.outcome == "pending",
                               c.c.status.in_(dispatching.OPEN_STATUSES))
                        .order_by(d.c.offered_ms.desc())).mappings().all()
    return [{"consultation": summary(conn, dict(r), now), "offer": {
        "round": r["offer_round"], "offered": iso_from_ms(r["offered_ms"]),
        "expires": iso_from_ms(r["next_escalation_ms"]), "reasons": r["reasons"] or [], "score": r["score"]}}
        for r in rows]


def detail(conn: sa.Connection, actor: Actor, row: dict[str, Any], now: int) -> dict[str, Any]:
    view = summary(conn, row, now)
    view["vitals"] = row["vitals"]
    offers = []
    if actor.sees_all_clinics:
        d = dispatch_offers
        offers = [{"expert_id": o.expert_id, "expert": o.name, "round": o.round, "outcome": o.outcome,
                   "offered": iso_from_ms(o.offered_ms), "responded": iso_from_ms(o.responded_ms),
                   "reasons": o.reasons or []}
                  for o in conn.execute(sa.select(d, experts.c.name).join(experts, experts.c.id == d.c.expert_id)
                                        .where(d.c.consultation_id == row["id"]).order_by(d.c.id))]
    audit.record(conn, actor, "consultation.read", "consultation", row["public_id"], clinic_id=row["clinic_id"],
                 detail={"patient_id": row["patient_id"]})
    return {"consultation": view, "offers": offers, "messages": consultations.messages(conn, row["id"]),
            "advice": consultations.advice_of(conn, row["id"]), "reports": consultations.list_reports(conn, row["id"])}


@routes.get("/api/v1/consultations")
async def api_list(request: web.Request) -> web.Response:
    actor = await require(request)
    params = {k: v for k, v in request.query.items() if k in ("status", "kind", "clinic_id") and v}
    rows = await _work(request, lambda conn, _fx, now: list_rows(conn, actor, params, now))
    return web.json_response({"consultations": rows})


@routes.get("/api/v1/offers")
async def api_offers(request: web.Request) -> web.Response:
    actor = await require(request, Role.EXPERT)
    offers = await _work(request, lambda conn, _fx, now: pending_offers(conn, actor, now))
    return web.json_response({"offers": offers})


@routes.get("/api/v1/consultations/{public_id}")
async def api_detail(request: web.Request) -> web.Response:
    actor = await require(request)
    pid = request.match_info["public_id"]
    found = await _work(request, lambda conn, _fx, now: detail(conn, actor, _visible(conn, actor, pid), now))
    return web.json_response(found)


@routes.get("/consultations")
async def list_page(request: web.Request) -> web.Response:
    actor = await require(request)

    def read(conn: sa.Connection, _fx: AfterCommit, now: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return list_rows(conn, actor, {}, now), pending_offers(conn, actor, now)

    rows, offers = await _work(request, read)
    return html.response(consultation_html.list_page(actor, rows, offers))


@routes.get("/consultations/{public_id}")
async def detail_page(request: web.Request) -> web.Response:
    actor = await require(request)
    pid = request.match_info["public_id"]
    found = await _work(request, lambda conn, _fx, now: detail(conn, actor, _visible(conn, actor, pid), now))
    return html.response(consultation_html.detail_page(actor, found))


# ---- requesting -----------------------------------------------------------------------------------
def _create(conn: sa.Connection, actor: Actor, body: dict[str, Any], config: Any, effects: AfterCommit,
            now: int) -> dict[str, Any]:
    clinic_id = actor.clinic_id if actor.role is Role.CLINIC_STAFF else body.get("clinic_id")
    if not isinstance(clinic_id, str) or not clinic_id:
        raise consultations.ConsultationError("clinic_id: which clinic the consultation is for")
    department_id = None
    if body.get("department") not in (None, ""):
        wanted = body["department"]
        department_id = wanted if isinstance(wanted, int) and not isinstance(wanted, bool) else \
            departments.resolve(conn, str(wanted))
        if department_id is None:
            raise consultations.ConsultationError(f"department: {wanted!r} is not a known department or synonym")
    expert_id = body.get("expert_id")
    if expert_id is not None and (isinstance(expert_id, bool) or not isinstance(expert_id, int)):
        raise consultations.ConsultationError("expert_id: expected an expert's id")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise consultations.ConsultationError("tags: expected a list of skills or diseases")
    for name in ("mrn", "language", *FORM_FIELDS):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise consultations.ConsultationError(f"{name}: expected text")
    if conn.execute(sa.select(clinics.c.id).where(clinics.c.id == clinic_id)).first() is None:
        raise consultations.ConsultationError(f"clinic_id: no clinic {clinic_id!r}")
    row = consultations.create(
        conn, kind=str(body.get("kind") or ""), clinic_id=clinic_id, config=config, effects=effects, now=now,
        actor=actor, patient_id=None, mrn=(body.get("mrn") or "").strip() or None, department_id=department_id,
        requested_expert_id=expert_id, tags=tags, language=body.get("language") or None,
        form={f: body.get(f) for f in FORM_FIELDS})
    return summary(conn, row, now)


@routes.post("/api/v1/consultations")
async def api_create(request: web.Request) -> web.Response:
    actor = await require(request, *REQUESTERS)
    body = await _body(request)
    config = _config(request)
    created = await _work(request, lambda conn, fx, now: _create(conn, actor, body, config, fx, now))
    return web.json_response(created, status=201)


# ---- acting on one consultation -----------------------------------------------------------------------
Action = Callable[[sa.Connection, Actor, dict[str, Any], dict[str, Any], AfterCommit, int, Any], Any]


async def _act(request: web.Request, action: Action, *roles: Role, with_body: bool = True,
               offered: bool = False) -> web.Response:
    actor = await require(request, *roles)
    body = await _body(request) if with_body and request.can_read_body else {}
    pid = request.match_info["public_id"]
    config = _config(request)

    def work(conn: sa.Connection, effects: AfterCommit, now: int) -> Any:
        row = _visible(conn, actor, pid, offered=offered)
        result = action(conn, actor, row, body, effects, now, config)
        return result if result is not None else summary(conn, consultations.get(conn, pid) or row, now)

    return web.json_response(await _work(request, work))


def _expert_id(actor: Actor) -> int:
    if actor.expert_id is None:
        raise consultations.NotAllowed("only experts accept or decline offers")
    return actor.expert_id


def _summary_of(conn: sa.Connection, row: dict[str, Any], now: int) -> dict[str, Any]:
    return summary(conn, row, now)


@routes.post("/api/v1/consultations/{public_id}/accept")
async def api_accept(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, _b, fx, now, config: _summary_of(
        conn, dispatching.accept(conn, row, _expert_id(actor), config, fx, now, actor), now), Role.EXPERT,
        with_body=False, offered=True)


@routes.post("/api/v1/consultations/{public_id}/decline")
async def api_decline(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, _b, fx, now, config: _summary_of(
        conn, dispatching.decline(conn, row, _expert_id(actor), config, fx, now, actor), now), Role.EXPERT,
        with_body=False, offered=True)


@routes.post("/api/v1/consultations/{public_id}/form")
async def api_form(request: web.Request) -> web.Response:
    def action(conn: sa.Connection, actor: Actor, row: dict[str, Any], body: dict[str, Any], fx: AfterCommit,
               now: int, _config: Any) -> Any:
        consultations._require_clinic_side(actor, row)
        return summary(conn, consultations.submit_form(conn, row, body, effects=fx, now=now, actor=actor), now)

    return await _act(request, action, *REQUESTERS)


@routes.post("/api/v1/consultations/{public_id}/stage")
async def api_stage(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, body, fx, now, _c: summary(conn, consultations.set_stage(
        conn, row, str(body.get("stage", "")), actor=actor, effects=fx, now=now), now), Role.EXPERT)


@routes.get("/api/v1/consultations/{public_id}/messages")
async def api_messages(request: web.Request) -> web.Response:
    actor = await require(request)
    pid = request.match_info["public_id"]
    found = await _work(request, lambda conn, _fx, _now: consultations.messages(
        conn, _visible(conn, actor, pid)["id"]))
    return web.json_response({"messages": found})


@routes.post("/api/v1/consultations/{public_id}/messages")
async def api_post_message(request: web.Request) -> web.Response:
    def action(conn: sa.Connection, actor: Actor, row: dict[str, Any], body: dict[str, Any], fx: AfterCommit,
               now: int, _config: Any) -> Any:
        if actor.role is Role.EXPERT and row["expert_id"] != actor.expert_id:
            raise consultations.NotAllowed("only the expert who accepted it chats in a consultation")
        return consultations.post(conn, row, actor, str(body.get("body") or ""), now=now, effects=fx)

    return await _act(request, action)


@routes.put("/api/v1/consultations/{public_id}/advice")
async def api_advice(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, body, _fx, now, _c: {"advice": consultations.save_advice(
        conn, row, body.get("items"), actor=actor, now=now)}, Role.EXPERT)


@routes.post("/api/v1/consultations/{public_id}/report")
async def api_report(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, body, fx, now, config: consultations.issue_report(
        conn, row, body.get("opinion"), actor=actor, config=config, effects=fx, now=now), Role.EXPERT)


@routes.post("/api/v1/consultations/{public_id}/rating")
async def api_rating(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, body, _fx, now, _c: summary(conn, consultations.rate(
        conn, row, body.get("rating"), body.get("comment"), actor=actor, now=now), now), *REQUESTERS)


@routes.post("/api/v1/consultations/{public_id}/adoption")
async def api_adoption(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, body, _fx, now, _c: summary(
        conn, consultations.record_adoption(conn, row, body.get("adopted"), body.get("note"), actor=actor, now=now),
        now), *REQUESTERS)


@routes.post("/api/v1/consultations/{public_id}/cancel")
async def api_cancel(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, body, fx, now, config: summary(conn, consultations.cancel(
        conn, row, body.get("reason"), actor=actor, config=config, effects=fx, now=now), now), *REQUESTERS)


@routes.post("/api/v1/consultations/{public_id}/close")
async def api_close(request: web.Request) -> web.Response:
    return await _act(request, lambda conn, actor, row, _b, fx, now, _c: summary(conn, consultations.close(
        conn, row, actor=actor, effects=fx, now=now), now), with_body=False)


async def _report_file(request: web.Request, kind: str) -> web.Response:
    actor = await require(request)
    pid, version = request.match_info["public_id"], int(request.match_info["version"])

    def read(conn: sa.Connection, _fx: AfterCommit, _now: int) -> dict[str, Any] | None:
        row = _visible(conn, actor, pid)
        doc = consultations.report_document(conn, row["id"], version)
        if doc is not None:
            audit.record(conn, actor, "consultation.report.export", "consultation", pid, clinic_id=row["clinic_id"],
                         detail={"version": version, "format": kind})
        return doc

    doc = await _work(request, read)
    if doc is None:
        raise _error(404, f"no report version {version} of consultation {pid}")
    if kind == "pdf":
        return web.Response(body=doc["pdf"], content_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="consultation-{pid}-v{version}.pdf"',
            "X-Content-SHA256": doc["sha256"]})
    return web.Response(text=doc["html"], content_type="text/html", charset="utf-8", headers={
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "X-Content-Type-Options": "nosniff"})


@routes.get("/api/v1/consultations/{public_id}/reports/{version:\\d+}.pdf")
async def api_report_pdf(request: web.Request) -> web.Response:
    return await _report_file(request, "pdf")


@routes.get("/api/v1/consultations/{public_id}/reports/{version:\\d+}.html")
async def api_report_html(request: web.Request) -> web.Response:
    return await _report_file(request, "html")


# ---- OpenAPI --------------------------------------------------------------------------------------
_STATUS = {"enum": [str(s) for s in consultations.Status]}
_SUMMARY = {"type": "object", "description": "A consultation (times UTC, ISO 8601)", "properties": {
    "public_id": {"type": "string"}, "kind": {"enum": [str(k) for k in consultations.Kind]}, "status": _STATUS,
    "stage": {"enum": [*consultations.STAGES, None]}, "clinic_id": {"type": "string"}, "clinic": {"type": "string"},
    "patient_id": {"type": ["integer", "null"]}, "patient": {"type": ["string", "null"]},
    "mrn": {"type": ["string", "null"]}, "department": {"type": ["string", "null"]},
    "expert_id": {"type": ["integer", "null"]}, "expert": {"type": ["string", "null"]},
    "requested": {"type": "string"}, "accepted": {"type": ["string", "null"]},
    "form_due": {"type": ["string", "null"]}, "form_overdue": {"type": "boolean"},
    "chief_complaint": {"type": ["string", "null"]}, "preliminary_diagnosis": {"type": ["string", "null"]},
    "question": {"type": ["string", "null"]}, "round": {"type": "integer"},
    "rating": {"type": ["integer", "null"]}, "advice_adopted": {"type": ["boolean", "null"]}}}
_OFFER = {"type": "object", "properties": {"consultation": _SUMMARY, "offer": {"type": "object", "properties": {
    "round": {"type": "integer"}, "offered": {"type": "string"}, "expires": {"type": ["string", "null"]},
    "reasons": {"type": "array", "items": {"type": "string"}, "description": "Why matching chose this expert"},
    "score": {"type": ["number", "null"]}}}}}
_ADVICE_ITEM = {"type": "object", "required": ["kind"], "properties": {
    "kind": {"enum": ["drug", "procedure", "diagnosis", "note"]},
    "name": {"type": "string"}, "dose": {"type": "string", "description": "drug: amount and unit, e.g. 300 mg"},
    "route": {"type": "string", "description": "drug: oral, intravenous, ... (or PO, IV, ...)"},
    "frequency": {"type": "string", "description": "drug: once, stat, daily, bid, tid, qid, prn, qNh ..."},
    "duration": {"type": "string", "description": "drug: e.g. 5 days, single dose"},
    "steps": {"type": "array", "items": {"type": "string"}, "description": "procedure: the steps in order"},
    "code": {"type": "string", "description": "diagnosis: ICD-10 code from the bundled list of common codes"},
    "certainty": {"enum": ["confirmed", "provisional", "differential"]}, "text": {"type": "string"},
    "note": {"type": "string"}}}
_ERRORS = {"400": openapi.ok(openapi.ERROR, "A field is invalid; the body names it"),
           "401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN,
           "404": openapi.ok(openapi.ERROR, "No such consultation, or not one the user may see")}
_PID = [openapi.path_param("public_id", "The consultation's public id")]


def _op(summary_text: str, response: dict[str, Any], body: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary_text, "parameters": _PID,
                          "responses": {"200": openapi.ok(response), **_ERRORS, **(extra or {})}}
    if body is not None:
        op["requestBody"] = openapi.json_body(body)
    return op


_CONFLICT = {"409": openapi.ok(openapi.ERROR, "Taken by another expert, not offered to you, or expired")}
_TEXT = {"type": "string"}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/consultations": {
        "get": {"summary": "Consultations the user may see, newest first (staff: all; clinic staff: their clinic's; "
                           "experts: theirs and those offered to them); audited",
                "parameters": [openapi.param("status", "Only this status"), openapi.param("kind", "Only this kind"),
                               openapi.param("clinic_id", "Only this clinic")],
                "responses": {"200": openapi.ok({"type": "object", "properties": {
                    "consultations": {"type": "array", "items": _SUMMARY}}}), "401": openapi.UNAUTHORIZED}},
        "post": {"summary": "Request a consultation (emergency, urgent or routine); it is dispatched at once to the "
                            "best-matched experts",
                 "requestBody": openapi.json_body({"type": "object", "required": ["kind"], "properties": {
                     "kind": {"enum": [str(k) for k in consultations.Kind]},
                     "clinic_id": {"type": "string", "description": "Coordinators; clinic staff: their own"},
                     "mrn": {"type": "string", "description": "The patient's record number at the clinic"},
                     "department": {"type": ["string", "integer"], "description": "Any name or synonym, or an id"},
                     "expert_id": {"type": "integer", "description": "Ask this expert first"},
                     "tags": {"type": "array", "items": _TEXT}, "language": _TEXT,
                     "chief_complaint": _TEXT, "preliminary_diagnosis": _TEXT, "question": _TEXT}}),
                 "responses": {"201": openapi.ok(_SUMMARY, "Requested and dispatched"), **_ERRORS}}},
    "/api/v1/offers": {"get": {"summary": "The logged-in expert's open offers, with why they were chosen",
                               "responses": {"200": openapi.ok({"type": "object", "properties": {
                                   "offers": {"type": "array", "items": _OFFER}}}), "401": openapi.UNAUTHORIZED,
                                   "403": openapi.FORBIDDEN}}},
    "/api/v1/consultations/{public_id}": {"get": _op(
        "A consultation with its vitals, offers (staff), chat, advice and reports; audited",
        {"type": "object", "properties": {"consultation": _SUMMARY, "offers": {"type": "array"},
                                          "messages": {"type": "array"}, "advice": {"type": "array"},
                                          "reports": {"type": "array"}}})},
    "/api/v1/consultations/{public_id}/accept": {"post": _op(
        "Accept an offer: the first expert to accept takes the consultation, the others are withdrawn", _SUMMARY,
        extra=_CONFLICT)},
    "/api/v1/consultations/{public_id}/decline": {"post": _op(
        "Decline an offer (when the whole round declined, the next round starts at once)", _SUMMARY,
        extra=_CONFLICT)},
    "/api/v1/consultations/{public_id}/form": {"post": _op(
        "The short form: chief complaint, preliminary diagnosis, question", _SUMMARY,
        {"type": "object", "properties": {"chief_complaint": _TEXT, "preliminary_diagnosis": _TEXT,
                                          "question": _TEXT}})},
    "/api/v1/consultations/{public_id}/stage": {"post": _op(
        "Start the session or move it on: identity_check, case_presentation, discussion, opinion", _SUMMARY,
        {"type": "object", "required": ["stage"], "properties": {"stage": {"enum": list(consultations.STAGES)}}})},
    "/api/v1/consultations/{public_id}/messages": {
        "get": _op("The session's chat", {"type": "object", "properties": {"messages": {"type": "array"}}}),
        "post": _op("Post to the chat (live to everyone in the session over /ws)", {"type": "object"},
                    {"type": "object", "required": ["body"], "properties": {"body": _TEXT}})},
    "/api/v1/consultations/{public_id}/advice": {"put": _op(
        "Replace the structured advice (drugs, procedures, ICD-10 diagnoses, notes); errors name the item and field",
        {"type": "object", "properties": {"advice": {"type": "array"}}},
        {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": _ADVICE_ITEM}}})},
    "/api/v1/consultations/{public_id}/report": {"post": _op(
        "Issue the report (next version) as HTML and PDF from the advice; it is pushed to the clinic",
        {"type": "object", "properties": {"version": {"type": "integer"}, "sha256": _TEXT}},
        {"type": "object", "properties": {"opinion": _TEXT}})},
    "/api/v1/consultations/{public_id}/reports/{version}.pdf": {"get": {
        "summary": "A report version as PDF; audited", "parameters": [
            *_PID, openapi.path_param("version", "Report version", {"type": "integer"})],
        "responses": {"200": {"description": "PDF", "content": {"application/pdf": {"schema": {"type": "string"}}}},
                      **_ERRORS}}},
    "/api/v1/consultations/{public_id}/reports/{version}.html": {"get": {
        "summary": "A report version as HTML; audited", "parameters": [
            *_PID, openapi.path_param("version", "Report version", {"type": "integer"})],
        "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                      **_ERRORS}}},
    "/api/v1/consultations/{public_id}/rating": {"post": _op(
        "The clinic rates the consultation (1-5)", _SUMMARY,
        {"type": "object", "required": ["rating"], "properties": {"rating": {"type": "integer", "minimum": 1,
                                                                             "maximum": 5}, "comment": _TEXT}})},
    "/api/v1/consultations/{public_id}/adoption": {"post": _op(
        "The clinic records whether the advice was adopted", _SUMMARY,
        {"type": "object", "required": ["adopted"], "properties": {"adopted": {"type": "boolean"}, "note": _TEXT}})},
    "/api/v1/consultations/{public_id}/cancel": {"post": _op(
        "Withdraw the consultation (open offers are withdrawn, the clinic is told; a scheduled one's appointment is "
        "cancelled and its booked time freed)", _SUMMARY,
        {"type": "object", "properties": {"reason": _TEXT}})},
    "/api/v1/consultations/{public_id}/close": {"post": _op("Close a reported consultation", _SUMMARY)},
}
