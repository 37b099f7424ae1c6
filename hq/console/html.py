"""HTML of the web console's pages, built from plain data with every value escaped (`html.escape`).

Rendering only: the data comes from `hq.console.pages`; live updates are done by static/console.js.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from aiohttp import web

SAFETY_NOTICE = (
    "Alarms shown here are forwarded copies: secondary and informational only. "
    "The bedside monitor remains the primary alarm system."
)

METRIC_LABELS = {
    "MDC_PULS_OXIM_SAT_O2": "SpO\u2082",
    "MDC_PULS_OXIM_PULS_RATE": "Pulse (SpO\u2082)",
    "MDC_PULS_OXIM_PERF_REL": "Perfusion index",
    "MDC_ECG_HEART_RATE": "Heart rate",
    "MDC_PULS_RATE": "Pulse rate",
    "MDC_PULS_RATE_NON_INV": "Pulse (NIBP)",
    "MDC_RESP_RATE": "Respiration",
    "MDC_AWAY_RESP_RATE": "Respiration (airway)",
    "MDC_PRESS_BLD_NONINV_SYS": "NIBP systolic",
    "MDC_PRESS_BLD_NONINV_DIA": "NIBP diastolic",
    "MDC_PRESS_BLD_NONINV_MEAN": "NIBP mean",
    "MDC_TEMP": "Temperature",
    "MDC_TEMP_BODY": "Body temperature",
    "MDC_AWAY_CO2_ET": "EtCO\u2082",
}


# UCUM codes are exact but not what a nurse reads: display forms for the common ones.
UNIT_LABELS = {
    "Cel": "\u00b0C",
    "[degF]": "\u00b0F",
    "mm[Hg]": "mmHg",
    "cm[H2O]": "cmH\u2082O",
    "/min": "/min",
    "%": "%",
    "kPa": "kPa",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "kg": "kg",
}


def unit_label(unit: str | None) -> str:
    return "" if unit is None else UNIT_LABELS.get(unit, unit)


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.removeprefix("MDC_").replace("_", " ").title())


def format_value(value: float | None) -> str:
    if value is None:
        return "\u2014"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


@dataclass(frozen=True, slots=True)
class NavItem:
    href: str
    label: str
    roles: frozenset[str]  # who sees the link (admin sees every link)


_EVERYONE = frozenset({"admin", "coordinator", "department_head", "expert", "clinic_staff"})
_OPERATIONS = frozenset({"admin", "coordinator", "department_head", "clinic_staff"})
# The console's sections, in the order of the navigation bar. A section's page checks access itself; this
# only decides whose bar shows the link.
NAV: tuple[NavItem, ...] = (
    NavItem("/", "Fleet", _OPERATIONS),
    NavItem("/enrolment", "Enrol a gateway", frozenset({"coordinator"})),
    NavItem("/schedule", "Schedule", _EVERYONE),
    NavItem("/consultations", "Consultations", _EVERYONE),
    NavItem("/patients", "Patients", _EVERYONE),
    NavItem("/experts", "Experts", _EVERYONE),
    NavItem("/consultation-metrics", "Metrics", _EVERYONE),
    NavItem("/admin/users", "Users", frozenset({"admin"})),
    NavItem("/audit", "Audit log", frozenset({"admin"})),
)

CSP = ("default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "media-src 'self' blob:; frame-ancestors 'none'; form-action 'self'")


def response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


def nav(actor: Any, current: str = "") -> str:
    marked = ' class="current"'
    items = "".join(
        f"<a href=\"{e(item.href)}\"{marked if item.href == current else ''}>{e(item.label)}</a>"
        for item in NAV if actor.role == "admin" or str(actor.role) in item.roles)
    return (f"<nav class=\"sections\">{items}</nav><span class=\"who\"><span id=\"whoami\">"
            f"{e(actor.display_name)}</span> <small>{e(str(actor.role).replace('_', ' '))}</small>"
            "<form method=\"post\" action=\"/logout\" class=\"logout\">"
            f"<input type=\"hidden\" name=\"csrf_token\" value=\"{e(actor.csrf_token or '')}\">"
            "<button type=\"submit\">Log out</button></form></span>")


def page(title: str, body: str, *, page_data: Mapping[str, Any], actor: Any = None, current: str = "",
         scripts: Sequence[str] = ("/static/live_socket.js", "/static/console.js")) -> str:
    """The common layout. `actor` (an hq.auth.Actor) adds the navigation, the user and the CSRF token that
    scripts send with unsafe requests; `scripts` are the page's own scripts (static files only: the CSP
    allows no inline script)."""
    # Page data goes to the script as JSON in a data attribute: escaped like any other value.
    script_data = {**page_data, "labels": METRIC_LABELS, "units": UNIT_LABELS}
    csrf = f"<meta name=\"csrf-token\" content=\"{e(actor.csrf_token or '')}\">" if actor is not None else ""
    bar = nav(actor, current) if actor is not None else ""
    tags = "".join(f"<script src=\"{e(src)}\"></script>" for src in scripts)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"{csrf}<title>{e(title)} \u00b7 Clinic HQ</title>"
        "<link rel=\"stylesheet\" href=\"/static/console.css\"></head>"
        f"<body data-page=\"{e(json.dumps(script_data))}\" data-live=\"connecting\">"
        f"<header class=\"top\"><a href=\"/\" class=\"brand\">Clinic HQ</a>{bar}"
        "<span class=\"live-state\" id=\"live-state\">connecting\u2026</span></header>"
        f"<p class=\"safety\" role=\"note\" id=\"safety-notice\">{e(SAFETY_NOTICE)}</p>"
        f"<main>{body}</main>{tags}</body></html>\n"
    )


def login_page(next_path: str, error: str | None) -> str:
    problem = f"<p class=\"error\" role=\"alert\">{e(error)}</p>" if error else ""
    body = (
        "<section class=\"login\"><h1>Log in</h1>" + problem +
        "<form method=\"post\" action=\"/login\">"
        f"<input type=\"hidden\" name=\"next\" value=\"{e(next_path)}\">"
        "<label>User name <input name=\"username\" autocomplete=\"username\" required autofocus></label>"
        "<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required>"
        "</label><button type=\"submit\">Log in</button></form></section>"
    )
    return page("Log in", body, page_data={"view": "login"}, scripts=())


def tile(obs: Mapping[str, Any]) -> str:
    return (
        f"<div class=\"tile\" data-patient=\"{e(obs['patient_id'])}\" data-clinic=\"{e(obs['clinic_id'])}\" "
        f"data-metric=\"{e(obs['metric'])}\">"
        f"<div class=\"label\">{e(metric_label(obs['metric']))}</div>"
        f"<div class=\"reading\"><span class=\"value\">{e(format_value(obs['value']))}</span> "
        f"<span class=\"unit\" title=\"{e(obs['unit'] or '')}\">{e(unit_label(obs['unit']))}</span></div>"
        f"<time class=\"time\" datetime=\"{e(obs['time'])}\">{e(obs['time'])}</time></div>"
    )


def gateway_card(gw: Mapping[str, Any], gaps: Sequence[Mapping[str, Any]] = (), *, manage: bool = False) -> str:
    lanes = "".join(f"<li data-lane=\"{e(name)}\">{e(lane['summary'])}</li>"
                    for name, lane in gw["backlog_by_lane"].items() if lane["count"])
    devices = "".join(
        f"<li data-device=\"{e(d['device_id'])}\" class=\"device state-{e(d['state'])}\">"
        f"{e(d['device_id'])} <small>{e(d['protocol'])} \u00b7 {e(d['state'])}</small></li>"
        for d in gw["devices"]
    )
    return (
        f"<div class=\"gateway\" data-gateway=\"{e(gw['gateway_id'])}\">"
        f"<div class=\"gateway-head\"><strong>{e(gw['gateway_id'])}</strong> "
        f"<span class=\"badge {e(gw['status'])}\">{e(gw['status'])}</span></div>"
        f"<div class=\"meta\">last contact <time class=\"last-contact\">{e(gw['last_contact'] or 'never')}</time>"
        f" \u00b7 backlog <span class=\"backlog\" data-count=\"{e(gw['backlog'])}\">{e(gw['backlog_summary'])}</span>"
        f" \u00b7 <span class=\"software\">{e(gw['software'])}</span></div>"
        f"{identity_line(gw, manage=manage)}"
        f"<ul class=\"lanes\">{lanes}</ul>"
        f"<ul class=\"devices\">{devices}</ul>"
        f"<ul class=\"gaps\">{''.join(gap_item(g) for g in gaps)}</ul></div>"
    )


def identity_line(gw: Mapping[str, Any], *, manage: bool = False) -> str:
    """The gateway's HQ-managed settings and certificate, and (`manage`: for coordinators) the link to its page."""
    config, identity = gw.get("config"), gw.get("identity")
    if config is None:
        settings = f"<span class=\"config\" data-state=\"local\">v{e(gw.get('config_version', 0))} (TOML only)</span>"
    else:
        settings = (f"<span class=\"config\" data-state=\"{e(config['state'])}\" "
                    f"data-version=\"{e(config['version'])}\">{e(config['summary'])}</span>")
    if identity is None:
        cert = "<span class=\"certificate\">not enrolled through HQ</span>"
    else:
        revoked = " <strong class=\"revoked\">revoked</strong>" if identity["revoked"] else ""
        cert = (f"<span class=\"certificate\">enrolled <time class=\"enrolled\">{e(identity['last_enrolment'])}</time>"
                f", expires <time class=\"expires\">{e(identity['certificate_expires'])}</time>{revoked}</span>")
    link = (f" \u00b7 <a class=\"manage\" href=\"/gateways/{e(quote(gw['gateway_id'], safe=''))}\">manage</a>"
            if manage else "")
    return f"<div class=\"identity\">settings {settings} \u00b7 {cert}{link}</div>"


def patient_link(clinic_id: str, patient_id: str) -> str:
    """A device's patient id at a clinic leads to the HQ patient it belongs to (`hq.console.patients`)."""
    return f"/patients/lookup?clinic_id={quote(clinic_id, safe='')}&mrn={quote(patient_id, safe='')}"


def patient_block(patient_id: str, vitals: Iterable[Mapping[str, Any]], clinic_id: str = "") -> str:
    tiles = "".join(tile(v) for v in vitals)
    return (
        f"<div class=\"patient\" data-patient=\"{e(patient_id)}\" data-clinic=\"{e(clinic_id)}\">"
        f"<a class=\"patient-link\" href=\"{e(patient_link(clinic_id, patient_id))}\">{e(patient_id)}</a>"
        f"<div class=\"tiles\">{tiles}</div></div>"
    )


def fleet_page(clinics: Sequence[Mapping[str, Any]], gateways: Sequence[Mapping[str, Any]],
               patients: Mapping[str, Sequence[tuple[str, Sequence[Mapping[str, Any]]]]],
               gaps: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, *, actor: Any = None) -> str:
    """`gaps`: each gateway's most recent gap records (readings its outbox quota dropped)."""
    manage = actor is not None and str(actor.role) in ("admin", "coordinator")
    sections = []
    for clinic in clinics:
        cid = clinic["clinic_id"]
        cards = "".join(gateway_card(g, (gaps or {}).get(g["gateway_id"], ()), manage=manage)
                        for g in gateways if g["clinic_id"] == cid)
        blocks = "".join(patient_block(pid, vitals, cid) for pid, vitals in patients.get(cid, []))
        sections.append(
            f"<section class=\"clinic\" data-clinic=\"{e(cid)}\"><h2>{e(clinic['name'])}</h2>"
            f"<div class=\"gateways\">{cards}</div>"
            f"<h3>Patients seen recently</h3><div class=\"patients\">{blocks}</div></section>"
        )
    body = "<h1>Fleet</h1>" + ("".join(sections) or "<p class=\"empty\">No gateway has reported yet.</p>")
    return page("Fleet", f"<div id=\"clinics\">{body}</div>", page_data={"view": "fleet"}, actor=actor, current="/")


def alarm_item(obs: Mapping[str, Any]) -> str:
    alarm = obs.get("alarm") or {}
    return (
        f"<li class=\"alarm priority-{e(alarm.get('priority', 'none'))}\" data-metric=\"{e(obs['metric'])}\">"
        f"<time>{e(obs['time'])}</time> <strong>{e(metric_label(obs['metric']))}</strong> "
        f"{e(alarm.get('text') or alarm.get('event') or '')} <small>{e(alarm.get('state', ''))}</small></li>"
    )


def gap_item(obs: Mapping[str, Any]) -> str:
    return f"<li class=\"gap\" data-device=\"{e(obs['device_id'])}\">{e(obs['gap']['text'])}</li>"


def chart(metric: str) -> str:
    return (
        f"<figure class=\"trend\" data-metric=\"{e(metric)}\"><figcaption>{e(metric_label(metric))}</figcaption>"
        f"<svg class=\"chart\" data-metric=\"{e(metric)}\" data-points=\"0\" viewBox=\"0 0 600 160\" "
        f"preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{e(metric_label(metric))} trend\"></svg></figure>"
    )
