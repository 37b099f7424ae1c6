"""The staff screen's consultation pages: the one-click emergency, a consultation's state ("queued", "received by
HQ", "accepted by Dr. X"), the short form, the report from HQ, the rating and whether the advice was adopted;
each action also as JSON under /api/v1.

Handlers and markup only: `gateway.consultations` does the work.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.consultations import ClinicConsultations, ConsultationError, Delivery, clock_ms, describe
from gateway.local_ui.home import consultation_item
from gateway.local_ui.shell import GATEWAY, check_same_origin, e, error_block, json_error, listing, page, response

routes = web.RouteTableDef()

REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


def local_time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def view(row: dict[str, Any], link_up: bool, now: int) -> dict[str, Any]:
    """A consultation as the screen's JSON API shows it."""
    state, text = describe(row, Delivery(row["request_queued"], link_up))
    due = row.get("form_due_ms")
    return {
        "public_id": row["public_id"], "kind": row["kind"], "origin": row["origin"], "state": state, "text": text,
        "hq_status": row.get("hq_status"), "mrn": row.get("mrn"), "requested_ms": row["requested_ms"],
        "requested_by": row.get("requested_by"),
        "expert": None if not row.get("expert_name") else {
            "name": row["expert_name"], "title": row.get("expert_title"), "hospital": row.get("hospital"),
            "accepted_ms": row.get("accepted_ms")},
        "form": row.get("form"), "form_queued": row["form_queued"], "form_due_ms": due,
        "form_overdue": due is not None and row.get("form") is None and now > due,
        "vitals": row.get("vitals") or [],
        "report": None if not row.get("report_html") else {
            "version": row.get("report_version"), "pdf_path": row.get("report_pdf_path"),
            "created_ms": row.get("report_ms")},
        "rating": row.get("rating"), "rating_comment": row.get("rating_comment"), "adopted": row.get("adopted"),
        "adoption_note": row.get("adoption_note"),
    }


def _consultations(request: web.Request) -> ClinicConsultations:
    return request.app[GATEWAY].consultations


async def _view(request: web.Request, public_id: str) -> dict[str, Any]:
    row = await _consultations(request).get(public_id)
    if row is None:
        raise web.HTTPNotFound(text=f"no consultation {public_id} at this clinic")
    return view(row, request.app[GATEWAY].link.is_connected, clock_ms())


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "the body is not JSON"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "the body must be a JSON object"}', content_type="application/json")
    return body


# ---- the click ----------------------------------------------------------------------------------
@routes.post("/emergency")
async def emergency_form(request: web.Request) -> web.StreamResponse:
    check_same_origin(request)
    form = await request.post()
    devices = [str(d) for d in form.getall("device", []) if str(d)]
    try:
        public_id = await _consultations(request).request_emergency(
            mrn=str(form.get("mrn", "")), devices=devices, requested_by=str(form.get("requested_by", "")))
    except ConsultationError as exc:
        return response(page(request.app[GATEWAY], "Emergency", error_block(str(exc))), status=400)
    raise web.HTTPSeeOther(f"/consultations/{public_id}")


@routes.post("/api/v1/emergency")
async def emergency_api(request: web.Request) -> web.Response:
    check_same_origin(request)
    body = await _json_body(request)
    devices = body.get("devices") or []
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        return json_error("devices: expected a list of device ids")
    mrn, by = body.get("mrn"), body.get("requested_by")
    if (mrn is not None and not isinstance(mrn, str)) or (by is not None and not isinstance(by, str)):
        return json_error("mrn and requested_by: expected strings")
    try:
        public_id = await _consultations(request).request_emergency(mrn=mrn, devices=devices, requested_by=by)
    except ConsultationError as exc:
        return json_error(str(exc))
    return web.json_response(await _view(request, public_id), status=201)


# ---- pages --------------------------------------------------------------------------------------
def vitals_table(vitals: list[dict[str, Any]]) -> str:
    if not vitals:
        return "<p class=\"empty\">No current readings were attached.</p>"
    rows = "".join(f"<tr><td>{e(v['metric'])}</td><td>{e(v['value'])} {e(v.get('unit') or '')}</td>"
                   f"<td>{e(v['device_id'])}</td><td>{e(local_time(v['time_ms']))}</td></tr>" for v in vitals)
    return ("<table class=\"vitals\" id=\"vitals\"><thead><tr><th>Reading</th><th>Value</th><th>Device</th>"
            f"<th>Time</th></tr></thead><tbody>{rows}</tbody></table>")


def short_form(v: dict[str, Any]) -> str:
    pid = e(v["public_id"])
    due = ""
    if v["form_due_ms"] is not None:
        overdue = " overdue" if v["form_overdue"] else ""
        due = (f"<p class=\"due{overdue}\" id=\"form-due\">Details due by {e(local_time(v['form_due_ms']))}"
               f"{' (overdue)' if v['form_overdue'] else ''}</p>")
    if v["form"] is not None:
        f = v["form"]
        sent = "queued, will be sent when the link returns" if v["form_queued"] else "received by HQ"
        return ("<section class=\"form-done\" id=\"short-form\"><h2>Details sent</h2>"
                f"<dl><dt>Chief complaint</dt><dd>{e(f.get('chief_complaint'))}</dd>"
                f"<dt>Preliminary diagnosis</dt><dd>{e(f.get('preliminary_diagnosis'))}</dd>"
                f"<dt>Question</dt><dd>{e(f.get('question'))}</dd></dl>"
                f"<p class=\"form-state\">{e(sent)}</p></section>")
    return (f"<section id=\"short-form\"><h2>Details for the expert</h2>{due}"
            f"<form method=\"post\" action=\"/consultations/{pid}/form\" class=\"short-form\">"
            "<label>Chief complaint <textarea name=\"chief_complaint\" rows=\"2\"></textarea></label>"
            "<label>Preliminary diagnosis <textarea name=\"preliminary_diagnosis\" rows=\"2\"></textarea></label>"
            "<label>Question for the expert <textarea name=\"question\" rows=\"3\"></textarea></label>"
            "<button type=\"submit\">Send details</button></form></section>")


def follow_up(v: dict[str, Any]) -> str:
    if v["report"] is None:
        return ""
    pid = e(v["public_id"])
    if v["rating"] is None:
        options = "".join(f"<option value=\"{n}\">{n}</option>" for n in range(5, 0, -1))
        rating = (f"<form method=\"post\" action=\"/consultations/{pid}/rating\" class=\"rating\" id=\"rating-form\">"
                  f"<label>Rating <select name=\"rating\">{options}</select></label>"
                  "<label>Comment <input name=\"comment\"></label><button type=\"submit\">Rate</button></form>")
    else:
        rating = f"<p id=\"rating\">Rated {e(v['rating'])}/5 {e(v['rating_comment'] or '')}</p>"
    if v["adopted"] is None:
        adoption = (f"<form method=\"post\" action=\"/consultations/{pid}/adoption\" class=\"adoption\" "
                    "id=\"adoption-form\"><label>Advice adopted? <select name=\"adopted\"><option value=\"yes\">yes"
                    "</option><option value=\"no\">no</option></select></label>"
                    "<label>Note <input name=\"note\"></label><button type=\"submit\">Record</button></form>")
    else:
        adoption = (f"<p id=\"adoption\">Advice {'adopted' if v['adopted'] else 'not adopted'} "
                    f"{e(v['adoption_note'] or '')}</p>")
    return f"<section class=\"follow-up\"><h2>Follow-up</h2>{rating}{adoption}</section>"


def consultation_page_body(v: dict[str, Any], error: str | None = None) -> str:
    pid = e(v["public_id"])
    patient = f" for patient {e(v['mrn'])}" if v["mrn"] else ""
    report = ""
    if v["report"] is not None:
        report = (f"<section class=\"report\" id=\"report\"><h2>Report (version {e(v['report']['version'])})</h2>"
                  f"<iframe class=\"report-frame\" sandbox src=\"/consultations/{pid}/report\" "
                  "title=\"Consultation report\"></iframe></section>")
    return (
        f"<h1>{e(v['kind'].title())} consultation{patient}</h1>{error_block(error)}"
        f"<p class=\"consultation-state state-{e(v['state'])}\" id=\"state\" data-state=\"{e(v['state'])}\">"
        f"{e(v['text'])}</p>"
        f"<p class=\"meta\">Requested {e(local_time(v['requested_ms']))} \u00b7 id <code>{pid}</code></p>"
        f"{report}{follow_up(v)}{short_form(v)}"
        f"<h2>Vitals attached</h2>{vitals_table(v['vitals'])}"
    )


@routes.get("/consultations")
async def list_page(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    rows = await gw.consultations.recent(100)
    items = "".join(consultation_item(r, gw.link.is_connected) for r in rows)
    body = (f"<h1>Consultations</h1><ul class=\"consultations\" id=\"consultations\">"
            f"{listing(items, 'None yet.')}</ul>")
    return response(page(gw, "Consultations", body, current="/consultations", page_data={"view": "consultations"}))


@routes.get("/consultations/{public_id}")
async def consultation_page(request: web.Request) -> web.Response:
    v = await _view(request, request.match_info["public_id"])
    return response(page(request.app[GATEWAY], "Consultation", consultation_page_body(v), current="/consultations",
                         page_data={"view": "consultation", "public_id": v["public_id"]}))


@routes.get("/consultations/{public_id}/report")
async def report_html(request: web.Request) -> web.Response:
    row = await _consultations(request).get(request.match_info["public_id"])
    if row is None or not row.get("report_html"):
        raise web.HTTPNotFound(text="no report for this consultation yet")
    return web.Response(text=row["report_html"], content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff"})


# ---- actions: form, rating, adoption --------------------------------------------------------------
async def _act(request: web.Request, fields: dict[str, Any], action: str) -> None:
    public_id = request.match_info["public_id"]
    c = _consultations(request)
    if action == "form":
        await c.submit_form(public_id, chief_complaint=_str(fields, "chief_complaint"),
                            preliminary_diagnosis=_str(fields, "preliminary_diagnosis"),
                            question=_str(fields, "question"))
    elif action == "rating":
        raw = fields.get("rating")
        try:
            rating = int(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else -1
        except ValueError:
            rating = -1
        if not 1 <= rating <= 5:
            raise ConsultationError(f"rating: {raw!r} is not a whole number from 1 to 5")
        await c.rate(public_id, rating, _str(fields, "comment"))
    else:
        raw = fields.get("adopted")
        if raw is True or raw == "yes":
            adopted = True
        elif raw is False or raw == "no":
            adopted = False
        else:
            raise ConsultationError(f"adopted: {raw!r}; expected yes/no (form) or true/false (JSON)")
        await c.record_adoption(public_id, adopted, _str(fields, "note"))


def _str(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise ConsultationError(f"{name}: expected text")
    return value


async def _form_action(request: web.Request, action: str) -> web.StreamResponse:
    check_same_origin(request)
    public_id = request.match_info["public_id"]
    await _view(request, public_id)  # 404 for an unknown consultation
    form = await request.post()
    try:
        await _act(request, {k: str(v) for k, v in form.items()}, action)
    except ConsultationError as exc:
        v = await _view(request, public_id)
        return response(page(request.app[GATEWAY], "Consultation", consultation_page_body(v, str(exc)),
                             current="/consultations", page_data={"view": "consultation", "public_id": public_id}),
                        status=400)
    raise web.HTTPSeeOther(f"/consultations/{public_id}")


async def _api_action(request: web.Request, action: str) -> web.Response:
    check_same_origin(request)
    public_id = request.match_info["public_id"]
    await _view(request, public_id)
    try:
        await _act(request, await _json_body(request), action)
    except ConsultationError as exc:
        return json_error(str(exc))
    return web.json_response(await _view(request, public_id))


@routes.post("/consultations/{public_id}/form")
async def form_page_action(request: web.Request) -> web.StreamResponse:
    return await _form_action(request, "form")


@routes.post("/consultations/{public_id}/rating")
async def rating_page_action(request: web.Request) -> web.StreamResponse:
    return await _form_action(request, "rating")


@routes.post("/consultations/{public_id}/adoption")
async def adoption_page_action(request: web.Request) -> web.StreamResponse:
    return await _form_action(request, "adoption")


@routes.post("/api/v1/consultations/{public_id}/form")
async def form_api(request: web.Request) -> web.Response:
    return await _api_action(request, "form")


@routes.post("/api/v1/consultations/{public_id}/rating")
async def rating_api(request: web.Request) -> web.Response:
    return await _api_action(request, "rating")


@routes.post("/api/v1/consultations/{public_id}/adoption")
async def adoption_api(request: web.Request) -> web.Response:
    return await _api_action(request, "adoption")


@routes.get("/api/v1/consultations")
async def list_api(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    now = clock_ms()
    rows = await gw.consultations.recent(100)
    return web.json_response({"consultations": [view(r, gw.link.is_connected, now) for r in rows]})


@routes.get("/api/v1/consultations/{public_id}")
async def consultation_api(request: web.Request) -> web.Response:
    return web.json_response(await _view(request, request.match_info["public_id"]))
