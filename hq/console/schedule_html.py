"""HTML of the console's schedule pages (overview, proposals, an appointment, an expert's availability, the
urgent extra slot form), built from plain data with every value escaped.

Markup only: `hq.console.schedule` gathers the data; static/schedule.js shows times in the browser's zone and
applies live updates (confirmations delivered, reminders, decisions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hq import booking, slots
from hq.auth import Actor, Role
from hq.clock import iso_from_ms
from hq.console import html
from hq.console.html import e

SCRIPTS = ("/static/live_socket.js", "/static/schedule.js")
STATUS_LABELS = {"booked": "Booked", "pending_approval": "Waiting for a department head", "rejected": "Not approved",
                 "cancelled": "Cancelled"}
KIND_LABELS = {"leave": "Leave", "clinic_duty": "Clinic duty"}


def when(ms: int) -> str:
    """A time as UTC text; the page's script rewrites it in the browser's own zone."""
    iso = iso_from_ms(ms) or ""
    return f"<time class=\"local\" datetime=\"{e(iso)}\">{e(booking.local_text(ms, 'UTC'))}</time>"


def csrf(actor: Actor) -> str:
    return f"<input type=\"hidden\" name=\"csrf_token\" value=\"{e(actor.csrf_token or '')}\">"


def problem(error: str | None) -> str:
    return f"<p class=\"error\" role=\"alert\" id=\"problem\">{e(error)}</p>" if error else ""


def confirmation(row: Mapping[str, Any]) -> str:
    if row["status"] != "booked":
        return ""
    if row["confirmed_ms"] is not None:
        return f"delivered to the clinic's gateway {when(row['confirmed_ms'])}"
    return "waiting for the clinic's gateway to confirm"


def _page(title: str, body: str, actor: Actor, view: str, **data: Any) -> str:
    return html.page(title, body, page_data={"view": view, **data}, actor=actor, current="/schedule",
                     scripts=SCRIPTS)


def appointments_table(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p class=\"empty\" id=\"no-appointments\">No appointments.</p>"
    items = "".join(
        f"<tr data-appointment=\"{r['id']}\" class=\"status-{e(r['status'])}\">"
        f"<td><a href=\"/schedule/appointments/{r['id']}\">#{r['id']}</a></td><td>{when(r['start_ms'])}"
        f"<br><small>{e(booking.local_text(r['start_ms'], r['expert_time_zone']))} for the expert</small></td>"
        f"<td>{e(r['expert_name'])}<br><small>{e(r['department_name'])}</small></td><td>{e(r['clinic_id'])}</td>"
        f"<td>{e(r['patient_mrn'] or '')}</td><td class=\"status\">{e(STATUS_LABELS.get(r['status'], r['status']))}"
        f"{' <small>(urgent extra slot)</small>' if r['urgent_extra'] else ''}</td>"
        f"<td class=\"confirmation\">{confirmation(r)}</td></tr>" for r in rows)
    return ("<table class=\"list\" id=\"appointments\"><thead><tr><th></th><th>When</th><th>Expert</th>"
            "<th>Clinic</th><th>Patient</th><th>Status</th><th>Clinic's gateway</th></tr></thead>"
            f"<tbody>{items}</tbody></table>")


def _options(items: Sequence[tuple[Any, str]], selected: Any = None, blank: str | None = None) -> str:
    first = f"<option value=\"\">{e(blank)}</option>" if blank is not None else ""
    return first + "".join(f"<option value=\"{e(v)}\"{' selected' if str(v) == str(selected) else ''}>{e(label)}"
                           "</option>" for v, label in items)


def request_form(departments: Sequence[Mapping[str, Any]], experts: Sequence[Mapping[str, Any]],
                 params: Mapping[str, str]) -> str:
    return (
        "<form method=\"get\" action=\"/schedule/proposals\" class=\"inline\" id=\"request\">"
        "<input type=\"hidden\" name=\"tz\" value=\"" + e(params.get("tz", "UTC")) + "\" data-browser-zone>"
        "<label>Department <select name=\"department\">"
        + _options([(d["code"], d["name"]) for d in departments], params.get("department"), "any (choose expert)")
        + "</select></label><label>or expert <select name=\"expert_id\">"
        + _options([(x["id"], f"{x['name']} ({x['department_name']})") for x in experts], params.get("expert_id"),
                   "any in the department")
        + "</select></label>"
        f"<label>From <input type=\"date\" name=\"not_before\" value=\"{e(params.get('not_before', ''))}\"></label>"
        f"<label>At least (minutes) <input type=\"number\" name=\"minutes\" min=\"0\" max=\"480\" step=\"5\" "
        f"value=\"{e(params.get('minutes', ''))}\"></label>"
        f"<label>Language <input name=\"language\" size=\"4\" value=\"{e(params.get('language', ''))}\"></label>"
        f"<label>Our hours from <input type=\"time\" name=\"hours_start\" step=\"300\" "
        f"value=\"{e(params.get('hours_start', ''))}\"></label>"
        f"<label>to <input type=\"time\" name=\"hours_end\" step=\"300\" value=\"{e(params.get('hours_end', ''))}\">"
        "</label><button type=\"submit\">Find slots</button></form>"
    )


def approvals(actor: Actor, rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p class=\"empty\">Nothing waiting for your approval.</p>"
    items = "".join(
        f"<li class=\"approval\" data-appointment=\"{r['id']}\"><strong>{e(r['expert_name'])}</strong> "
        f"{when(r['start_ms'])} to {when(r['end_ms'])}, clinic {e(r['clinic_id'])}: <q>{e(r['reason'])}</q> "
        f"<a href=\"/schedule/appointments/{r['id']}\">decide</a></li>" for r in rows)
    return f"<ul class=\"approvals\" id=\"approvals\">{items}</ul>"


def schedule_page(actor: Actor, data: Mapping[str, Any]) -> str:
    parts = ["<h1>Schedule</h1><ul class=\"live-events\" id=\"live-events\"></ul>"]
    if actor.role in (Role.ADMIN, Role.COORDINATOR, Role.CLINIC_STAFF):
        parts.append("<h2>Request a consultation</h2>" + request_form(data["departments"], data["experts"], {})
                     + "<p><a href=\"/schedule/extra\" id=\"extra-link\">Ask for an urgent extra slot</a> "
                     "(outside the published hours; a head of the department approves it)</p>")
    if actor.role in (Role.ADMIN, Role.DEPARTMENT_HEAD):
        parts.append("<h2>Urgent extra slots waiting for approval</h2>" + approvals(actor, data["approvals"]))
    if actor.role is Role.EXPERT and actor.expert_id is not None:
        parts.append(f"<p><a href=\"/schedule/experts/{actor.expert_id}\" id=\"my-availability\">Your weekly "
                     "availability, leave and clinic duty</a></p>")
    if actor.role in (Role.ADMIN, Role.COORDINATOR):
        links = "".join(f"<li><a href=\"/schedule/experts/{x['id']}\">{e(x['name'])}</a> "
                        f"<small>{e(x['department_name'])} \u00b7 {e(x['time_zone'])}</small></li>"
                        for x in data["experts"])
        parts.append(f"<details><summary>Experts' availability</summary><ul id=\"experts\">{links}</ul></details>")
    parts.append("<h2>Appointments</h2>" + appointments_table(data["appointments"]))
    return _page("Schedule", "".join(parts), actor, "schedule")


def proposals_page(actor: Actor, params: Mapping[str, str], proposals: Sequence[Mapping[str, Any]],
                   departments: Sequence[Mapping[str, Any]], experts: Sequence[Mapping[str, Any]],
                   error: str | None = None) -> str:
    clinic_field = "" if actor.role is Role.CLINIC_STAFF else \
        "<label>Clinic <input name=\"clinic_id\" required size=\"12\"></label>"
    items = "".join(
        f"<li class=\"proposal\" data-expert=\"{p['expert']['id']}\" data-start=\"{p['start_ms']}\">"
        f"<form method=\"post\" action=\"/schedule/book\" class=\"inline\">{csrf(actor)}"
        f"<input type=\"hidden\" name=\"expert_id\" value=\"{p['expert']['id']}\">"
        f"<input type=\"hidden\" name=\"start\" value=\"{p['start_ms']}\">"
        f"<input type=\"hidden\" name=\"end\" value=\"{p['end_ms']}\">"
        f"<span class=\"slot\">{when(p['start_ms'])} \u2013 {when(p['end_ms'])} <strong>{e(p['expert']['name'])}"
        f"</strong> <small>{e(p['expert']['title'])} {e(p['expert']['hospital'])} \u00b7 "
        f"{e(booking.local_text(p['start_ms'], p['expert']['time_zone']))} for the expert</small></span>"
        f"{clinic_field}<label>Patient record number <input name=\"mrn\" size=\"10\"></label>"
        "<label>Question <input name=\"reason\" size=\"24\"></label>"
        "<button type=\"submit\" class=\"book\">Book</button></form></li>" for p in proposals)
    found = f"<ol class=\"proposals\" id=\"proposals\">{items}</ol>" if proposals else \
        "<p class=\"empty\" id=\"no-proposals\">No free slot fits. Widen the request, or ask for an " \
        "<a href=\"/schedule/extra\">urgent extra slot</a>.</p>"
    body = ("<h1>Proposed slots</h1>" + problem(error) + request_form(departments, experts, params)
            + ("" if error else found))
    return _page("Proposed slots", body, actor, "proposals")


def appointment_page(actor: Actor, row: Mapping[str, Any], moves: Sequence[Mapping[str, Any]], *,
                     may_change: bool, may_cancel: bool, may_decide: bool, error: str | None = None) -> str:
    a = row
    facts = [("Status", f"<span id=\"status\">{e(STATUS_LABELS.get(a['status'], a['status']))}</span>"
                        + (" <small>(urgent extra slot)</small>" if a["urgent_extra"] else "")),
             ("When", f"{when(a['start_ms'])} \u2013 {when(a['end_ms'])} <small>("
                      f"{e(booking.local_text(a['start_ms'], a['expert_time_zone']))} for the expert)</small>"),
             ("Expert", f"{e(a['expert_name'])} <small>{e(a['expert_title'])} {e(a['hospital'])}</small>"),
             ("Department", e(a["department_name"])), ("Clinic", e(a["clinic_id"])),
             ("Patient", e(a["patient_mrn"] or "")), ("Question", e(a["reason"] or "")),
             ("Consultation", f"<a href=\"/consultations/{e(a['consultation_public_id'])}\">open</a>"
                              if a["consultation_public_id"] else ""),
             ("Clinic's gateway", f"<span id=\"confirmation\">{confirmation(a)}</span>"),
             ("Reminder", f"<span id=\"reminder\">{when(a['reminded_ms']) if a['reminded_ms'] else 'not yet'}</span>")]
    if a["decided_ms"]:
        facts.append(("Decision", f"{when(a['decided_ms'])} {e(a['decision_note'] or '')}"))
    if a["cancelled_ms"]:
        facts.append(("Cancelled", f"{when(a['cancelled_ms'])} {e(a['cancel_reason'] or '')}"))
    rows = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in facts)
    actions = []
    if may_decide and a["status"] == "pending_approval":
        actions.append(
            f"<form method=\"post\" action=\"/schedule/appointments/{a['id']}/approve\" class=\"inline\">"
            f"{csrf(actor)}<label>Note <input name=\"note\"></label><button type=\"submit\" id=\"approve\">Approve"
            f"</button></form><form method=\"post\" action=\"/schedule/appointments/{a['id']}/reject\" "
            f"class=\"inline\">{csrf(actor)}<label>Why not <input name=\"note\"></label>"
            "<button type=\"submit\" id=\"reject\">Reject</button></form>")
    if may_cancel and a["status"] in ("booked", "pending_approval"):
        actions.append(f"<form method=\"post\" action=\"/schedule/appointments/{a['id']}/cancel\" class=\"inline\">"
                       f"{csrf(actor)}<label>Reason <input name=\"reason\"></label>"
                       "<button type=\"submit\" id=\"cancel\">Cancel the appointment</button></form>")
    if may_change and a["status"] == "booked" and not a["urgent_extra"] and moves:
        options = "".join(
            f"<li><form method=\"post\" action=\"/schedule/appointments/{a['id']}/reschedule\" class=\"inline\">"
            f"{csrf(actor)}<input type=\"hidden\" name=\"start\" value=\"{m['start_ms']}\">"
            f"<input type=\"hidden\" name=\"end\" value=\"{m['end_ms']}\">{when(m['start_ms'])} "
            "<button type=\"submit\" class=\"move\">Move here</button></form></li>" for m in moves)
        actions.append(f"<h2>Move to another slot</h2><ul class=\"moves\">{options}</ul>")
    body = (f"<h1>Appointment #{a['id']}</h1>" + problem(error)
            + f"<table class=\"appointment-facts\" data-appointment=\"{a['id']}\">{rows}</table>" + "".join(actions)
            + "<p><a href=\"/schedule\">Back to the schedule</a></p>")
    return _page(f"Appointment #{a['id']}", body, actor, "appointment", appointment_id=a["id"])


def availability_page(actor: Actor, expert: Mapping[str, Any], rules_text: str,
                      rules: Sequence[slots.WeeklyRule], exceptions: Sequence[Mapping[str, Any]],
                      *, editable: bool, error: str | None = None, clashes: Sequence[Mapping[str, Any]] = ()) -> str:
    zone = expert["time_zone"]
    described = "".join(f"<li>{e(slots.describe(r))}</li>" for r in rules) or \
        "<li class=\"empty\">No weekly hours published.</li>"
    listed = "".join(
        f"<li data-exception=\"{x['id']}\">{e(KIND_LABELS.get(x['kind'], x['kind']))}: {when(x['starts_ms'])} "
        f"\u2013 {when(x['ends_ms'])} {e(x['note'] or '')}"
        + (f"<form method=\"post\" action=\"/schedule/exceptions/{x['id']}/remove\" class=\"inline\">{csrf(actor)}"
           "<button type=\"submit\">Remove</button></form>" if editable else "") + "</li>" for x in exceptions) or \
        "<li class=\"empty\">No leave or clinic duty ahead.</li>"
    warn = ""
    if clashes:
        warn = ("<p class=\"error\" role=\"alert\" id=\"clashes\">Appointments during this time still stand; move "
                "or cancel them: " + ", ".join(f"<a href=\"/schedule/appointments/{c['id']}\">#{c['id']}</a>"
                                               for c in clashes) + "</p>")
    forms = ""
    if editable:
        forms = (
            f"<h2>Edit weekly hours</h2><form method=\"post\" action=\"/schedule/experts/{expert['id']}/rules\" "
            f"id=\"rules-form\">{csrf(actor)}<p>One line per window, in {e(zone)} time, e.g. <code>Mon 09:00-12:00 "
            "30</code> (30-minute slots) or <code>Sun 22:00-02:00 60</code> (ends the next day); optional "
            "<code>from YYYY-MM-DD</code> / <code>until YYYY-MM-DD</code>.</p>"
            f"<textarea name=\"rules\" rows=\"8\" cols=\"60\">{e(rules_text)}</textarea><br>"
            "<button type=\"submit\" id=\"publish\">Publish</button></form>"
            f"<h2>Add leave or clinic duty</h2><form method=\"post\" action=\"/schedule/experts/{expert['id']}/"
            f"exceptions\" class=\"inline\" id=\"exception-form\">{csrf(actor)}"
            "<label>Kind <select name=\"kind\"><option value=\"leave\">Leave</option>"
            "<option value=\"clinic_duty\">Clinic duty</option></select></label>"
            f"<label>From ({e(zone)}) <input type=\"datetime-local\" name=\"starts\" step=\"300\" required></label>"
            f"<label>To ({e(zone)}) <input type=\"datetime-local\" name=\"ends\" step=\"300\" required></label>"
            "<label>Note <input name=\"note\"></label><button type=\"submit\">Add</button></form>")
    body = (f"<h1>Availability of {e(expert['name'])}</h1><p>Time zone: <strong id=\"zone\">{e(zone)}</strong></p>"
            + problem(error) + warn + f"<h2>Weekly hours</h2><ul id=\"rules\">{described}</ul>"
            + f"<h2>Leave and clinic duty</h2><ul id=\"exceptions\">{listed}</ul>" + forms)
    return _page(f"Availability of {expert['name']}", body, actor, "availability", expert_id=expert["id"])


def extra_page(actor: Actor, experts: Sequence[Mapping[str, Any]], values: Mapping[str, str],
               error: str | None = None) -> str:
    clinic_field = "" if actor.role is Role.CLINIC_STAFF else \
        f"<label>Clinic <input name=\"clinic_id\" required value=\"{e(values.get('clinic_id', ''))}\"></label>"
    body = (
        "<h1>Urgent extra slot</h1><p>For a consultation that cannot wait for a published slot. The time is held "
        "at once; a head of the expert's department approves or rejects it, and the clinic's gateway is told "
        "either way.</p>" + problem(error)
        + f"<form method=\"post\" action=\"/schedule/extra\" id=\"extra-form\">{csrf(actor)}"
        "<input type=\"hidden\" name=\"tz\" value=\"" + e(values.get("tz", "UTC")) + "\" data-browser-zone>"
        "<label>Expert <select name=\"expert_id\" required>"
        + _options([(x["id"], f"{x['name']} ({x['department_name']})") for x in experts], values.get("expert_id"))
        + "</select></label>"
        f"<label>Start (your time) <input type=\"datetime-local\" name=\"start\" step=\"300\" required "
        f"value=\"{e(values.get('start', ''))}\"></label>"
        f"<label>Minutes <input type=\"number\" name=\"minutes\" min=\"5\" max=\"240\" step=\"5\" required "
        f"value=\"{e(values.get('minutes', '30'))}\"></label>{clinic_field}"
        f"<label>Patient record number <input name=\"mrn\" value=\"{e(values.get('mrn', ''))}\"></label>"
        f"<label>Why it is urgent <textarea name=\"reason\" required>{e(values.get('reason', ''))}</textarea>"
        "</label><button type=\"submit\">Ask for approval</button></form>")
    return _page("Urgent extra slot", body, actor, "extra")
