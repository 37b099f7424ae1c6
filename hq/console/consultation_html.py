"""Markup of the console's consultation pages: the list with an expert's live offers and the request form, and
the session page (stages, chat, vitals, structured advice, report, rating and follow-up).

Rendering only, from the JSON shapes the API returns (every value escaped); static/consultations.js makes them
live and sends the actions to the JSON API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hq.advice import CERTAINTIES, FREQUENCIES, ROUTES
from hq.console import html
from hq.console.html import e
from hq.consultations import STAGES

SCRIPTS = ("/static/live_socket.js", "/static/consultations.js")
AT_CLINIC = " \u00b7 at the clinic"
DASH = "\u2014"
STATUS_LABELS = {"scheduled": "scheduled", "requested": "waiting for an expert", "dispatching": "offered",
                 "escalated": "escalated", "accepted": "accepted", "in_session": "in session",
                 "reported": "reported", "closed": "closed", "cancelled": "cancelled"}


def status_badge(status: str) -> str:
    label = STATUS_LABELS.get(status, status)
    return f"<span class=\"badge status-{e(status)}\" data-status=\"{e(status)}\">{e(label)}</span>"


def consultation_row(c: Mapping[str, Any]) -> str:
    overdue = " <span class=\"badge overdue\">form overdue</span>" if c["form_overdue"] else ""
    return (f"<tr class=\"consultation\" data-public-id=\"{e(c['public_id'])}\">"
            f"<td><a href=\"/consultations/{e(c['public_id'])}\">{e(c['kind'])}</a></td>"
            f"<td class=\"status\">{status_badge(c['status'])}{overdue}</td><td>{e(c['clinic'])}</td>"
            f"<td>{e(c['patient'] or c['mrn'] or '')}</td><td>{e(c['chief_complaint'] or '')}</td>"
            f"<td class=\"expert\">{e(c['expert'] or '')}</td><td><time>{e(c['requested'])}</time></td></tr>")


def offer_card(offer: Mapping[str, Any]) -> str:
    c = offer["consultation"]
    reasons = "".join(f"<li>{e(r)}</li>" for r in offer["offer"]["reasons"])
    return (f"<div class=\"offer\" data-public-id=\"{e(c['public_id'])}\">"
            f"<h3>{e(c['kind'].title())} from {e(c['clinic'])}</h3>"
            f"<p>{e(c['patient'] or 'patient not identified')} \u00b7 {e(c['chief_complaint'] or 'no details yet')}</p>"
            f"<p class=\"why\">Why you: </p><ul class=\"reasons\">{reasons}</ul>"
            f"<p class=\"expires\">Round {e(offer['offer']['round'])}, open until <time>{e(offer['offer']['expires'])}"
            "</time></p><button type=\"button\" class=\"accept\">Accept</button> "
            "<button type=\"button\" class=\"decline\">Decline</button><p class=\"outcome\"></p></div>")


def request_form(actor: Any) -> str:
    clinic = "" if actor.role == "clinic_staff" else "<label>Clinic <input name=\"clinic_id\" required></label>"
    return (
        "<form id=\"new-consultation\" class=\"inline\">"
        "<label>Kind <select name=\"kind\"><option value=\"emergency\">emergency</option>"
        "<option value=\"urgent\">urgent</option><option value=\"routine\">routine</option></select></label>"
        f"{clinic}<label>Patient record number <input name=\"mrn\"></label>"
        "<label>Department <input name=\"department\" placeholder=\"e.g. \u5fc3\u5185\u79d1 or Cardiology\"></label>"
        "<label>Chief complaint <input name=\"chief_complaint\"></label>"
        "<label>Preliminary diagnosis <input name=\"preliminary_diagnosis\"></label>"
        "<label>Question <input name=\"question\"></label>"
        "<button type=\"submit\">Request</button><p class=\"error\" id=\"request-error\" role=\"alert\"></p></form>")


def list_page(actor: Any, rows: Sequence[Mapping[str, Any]], offers: Sequence[Mapping[str, Any]]) -> str:
    parts = ["<h1>Consultations</h1>"]
    if actor.role in ("expert", "admin"):
        cards = "".join(offer_card(o) for o in offers)
        parts.append(f"<section id=\"offers-section\"><h2>Offers for you</h2><div id=\"offers\">{cards}</div>"
                     "<p class=\"empty\" id=\"no-offers\">No open offers.</p></section>")
    if actor.role != "expert":
        parts.append("<section><h2>Request a consultation</h2>" + request_form(actor) + "</section>")
    parts.append("<div id=\"escalations\" role=\"alert\"></div>")
    body_rows = "".join(consultation_row(c) for c in rows)
    parts.append("<table class=\"list\" id=\"consultations\"><thead><tr><th>Kind</th><th>Status</th><th>Clinic</th>"
                 "<th>Patient</th><th>Chief complaint</th><th>Expert</th><th>Requested (UTC)</th></tr></thead>"
                 f"<tbody>{body_rows}</tbody></table>")
    return html.page("Consultations", "".join(parts), page_data={"view": "consultations", "offers": list(offers)},
                     actor=actor, current="/consultations", scripts=SCRIPTS)


def _vitals(vitals: Mapping[str, Any] | None) -> str:
    rows = []
    for source in ("gateway", "hq"):
        for v in (vitals or {}).get(source, []):
            rows.append(f"<tr><td>{e(html.metric_label(v['metric']))}</td><td>{e(html.format_value(v['value']))} "
                        f"{e(html.unit_label(v.get('unit')))}</td><td>{e(v.get('device_id') or '')}</td>"
                        f"<td>{e(source)}</td></tr>")
    if not rows:
        return "<p class=\"empty\">No vitals were attached.</p>"
    return ("<table class=\"list\" id=\"vitals\"><thead><tr><th>Reading</th><th>Value</th><th>Device</th>"
            f"<th>From</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _advice_editor() -> str:
    routes = "".join(f"<option value=\"{e(k)}\">{e(v)}</option>" for k, v in ROUTES.items())
    frequencies = "".join(f"<option value=\"{e(k)}\">{e(v)}</option>" for k, v in FREQUENCIES.items())
    certainties = "".join(f"<option value=\"{e(c)}\">{e(c)}</option>" for c in CERTAINTIES)
    return (
        "<section id=\"advice-editor\"><h2>Structured advice</h2><ol id=\"advice-items\"></ol>"
        "<fieldset data-kind=\"diagnosis\"><legend>Diagnosis (ICD-10)</legend>"
        "<input name=\"code\" placeholder=\"e.g. I21.9\"> <select name=\"certainty\">" + certainties + "</select>"
        " <button type=\"button\" class=\"add\">Add diagnosis</button></fieldset>"
        "<fieldset data-kind=\"drug\"><legend>Drug</legend><input name=\"name\" placeholder=\"name\"> "
        "<input name=\"dose\" placeholder=\"dose, e.g. 300 mg\"> <select name=\"route\">" + routes + "</select> "
        "<input name=\"frequency\" list=\"frequencies\" placeholder=\"frequency, e.g. bid or q6h\"> "
        f"<datalist id=\"frequencies\">{frequencies}</datalist>"
        "<input name=\"duration\" placeholder=\"duration, e.g. 5 days\"> "
        "<button type=\"button\" class=\"add\">Add drug</button></fieldset>"
        "<fieldset data-kind=\"procedure\"><legend>Procedure</legend><input name=\"name\" placeholder=\"name\"> "
        "<textarea name=\"steps\" rows=\"3\" placeholder=\"one step per line, in order\"></textarea> "
        "<button type=\"button\" class=\"add\">Add procedure</button></fieldset>"
        "<fieldset data-kind=\"note\"><legend>Note</legend><textarea name=\"text\" rows=\"2\"></textarea> "
        "<button type=\"button\" class=\"add\">Add note</button></fieldset>"
        "<button type=\"button\" id=\"save-advice\">Save advice</button>"
        "<p class=\"error\" id=\"advice-error\" role=\"alert\"></p><p id=\"advice-saved\"></p>"
        "<h2>Report</h2><label>Opinion <textarea name=\"opinion\" id=\"opinion\" rows=\"4\"></textarea></label>"
        "<button type=\"button\" id=\"issue-report\">Issue report</button>"
        "<p class=\"error\" id=\"report-error\" role=\"alert\"></p></section>")


def _follow_up(c: Mapping[str, Any]) -> str:
    options = "".join(f"<option value=\"{n}\">{n}</option>" for n in range(5, 0, -1))
    return (
        "<section id=\"follow-up\"><h2>Rating and follow-up</h2>"
        f"<p id=\"rating-state\">{'Rated ' + e(c['rating']) + '/5' if c['rating'] else 'Not rated yet.'}</p>"
        f"<form id=\"rating-form\" class=\"inline\"><label>Rating <select name=\"rating\">{options}</select></label>"
        "<label>Comment <input name=\"comment\"></label><button type=\"submit\">Rate</button></form>"
        f"<p id=\"adoption-state\">{_adoption_text(c['advice_adopted'])}</p>"
        "<form id=\"adoption-form\" class=\"inline\"><label>Advice adopted? <select name=\"adopted\">"
        "<option value=\"true\">yes</option><option value=\"false\">no</option></select></label>"
        "<label>Note <input name=\"note\"></label><button type=\"submit\">Record</button></form></section>")


def _adoption_text(adopted: bool | None) -> str:
    if adopted is None:
        return "Adoption not recorded yet."
    return "Advice adopted." if adopted else "Advice not adopted."


def detail_page(actor: Any, detail: Mapping[str, Any]) -> str:
    c = detail["consultation"]
    pid = e(c["public_id"])
    is_expert = actor.role == "expert" and c["expert_id"] is not None and c["expert_id"] == actor.expert_id
    current = ' class="current"'
    stages = "".join(f"<li data-stage=\"{e(s)}\"{current if c['stage'] == s else ''}>"
                     f"<button type=\"button\" class=\"stage\" data-stage=\"{e(s)}\">{e(s.replace('_', ' '))}"
                     "</button></li>" for s in STAGES)
    reports = "".join(f"<li data-version=\"{r['version']}\">Version {r['version']} ({e(r['created'])}) "
                      f"<a href=\"/api/v1/consultations/{pid}/reports/{r['version']}.pdf\">PDF</a> "
                      f"<a href=\"/api/v1/consultations/{pid}/reports/{r['version']}.html\">HTML</a>"
                      f"{AT_CLINIC if r['delivered'] else ''}</li>" for r in detail["reports"])
    form = "".join(f"<dt>{e(label)}</dt><dd>{e(c[key] or DASH)}</dd>" for key, label in (
        ("chief_complaint", "Chief complaint"), ("preliminary_diagnosis", "Preliminary diagnosis"),
        ("question", "Question")))
    overdue = ("<p class=\"badge overdue\" id=\"form-overdue\">The short form is overdue</p>"
               if c["form_overdue"] else "")
    body = (
        f"<h1>{e(c['kind'].title())} consultation <small>{pid}</small></h1>"
        f"<p id=\"status\">{status_badge(c['status'])} <span id=\"expert-name\">{e(c['expert'] or '')}</span> "
        f"\u00b7 {e(c['clinic'])} \u00b7 patient {e(c['patient'] or c['mrn'] or 'not identified')}</p>"
        f"<p><a href=\"/consultations/{pid}/call\">Video call</a></p>"
        f"<section><h2>Session</h2><ol class=\"stages\" id=\"stages\">{stages}</ol></section>"
        f"<section><h2>Case</h2>{overdue}<dl id=\"form\">{form}</dl></section>"
        f"<section><h2>Vitals at the request</h2>{_vitals(c.get('vitals'))}</section>"
        "<section><h2>Chat</h2><ol class=\"chat\" id=\"chat\"></ol>"
        "<form id=\"chat-form\" class=\"inline\"><input name=\"body\" autocomplete=\"off\" required>"
        "<button type=\"submit\">Send</button></form></section>"
        + (_advice_editor() if is_expert or actor.role == "admin" else "")
        + f"<section><h2>Reports</h2><ul id=\"reports\">{reports}</ul></section>"
        + (_follow_up(c) if actor.role != "expert" else "")
    )
    data = {"view": "consultation", "public_id": c["public_id"], "messages": detail["messages"],
            "advice": detail["advice"], "status": c["status"], "stage": c["stage"]}
    return html.page(f"Consultation {c['public_id'][:8]}", body, page_data=data, actor=actor,
                     current="/consultations", scripts=SCRIPTS)
