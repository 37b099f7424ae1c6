"""Console pages of fleet administration (coordinators): a gateway's certificate, its HQ-managed settings with
their versions and the gateway's answers, revoking it; and enrolling a new gateway (a one-time token, shown once).

Thin handlers and their markup; the work is `hq.fleet_admin_api`'s (the same operations as the JSON API).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web

from hq import enrolment, gateway_settings
from hq.api import fleet_view
from hq.appkeys import CONFIG, ENGINE
from hq.auth import Actor, Role, require
from hq.clock import iso_from_ms
from hq.console import html
from hq.console.html import e
from hq.fleet_admin_api import RequestError, SettingsRefused, change_settings, issue_token, revoke_gateway, ttl_h_of

routes = web.RouteTableDef()

SETTINGS_HELP = (
    "HQ may change only settings that cannot cut the gateway off from HQ or from its devices: how often it "
    "reports, how soon unsent vitals give way to fresh ones, and when a serial device counts as silent. Leave a "
    "field empty to use the gateway's own TOML value. The gateway checks each version with its configuration "
    "rules, keeps it across restarts, and applies it at once or rejects it with a reason."
)


def _csrf(actor: Actor) -> str:
    return f"<input type=\"hidden\" name=\"csrf_token\" value=\"{e(actor.csrf_token or '')}\">"


def _url(gateway_id: str, suffix: str = "") -> str:
    return f"/gateways/{quote(gateway_id, safe='')}{suffix}"


# ---- the gateway page -------------------------------------------------------------------------------------
def _gateway_data(engine: sa.Engine, gateway_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    found = [g for g in fleet_view(engine) if g["gateway_id"] == gateway_id]
    with engine.connect() as conn:
        versions = gateway_settings.history(conn, gateway_id)
    return (found[0] if found else None), versions


def _number(value: Any) -> str:
    return "" if value is None else f"{value:g}"


def _value(settings: Mapping[str, Any], *keys: str) -> str:
    """A number from a version's settings JSON for the form, as it was sent (even a value the gateway refused)."""
    node: Any = settings
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return _number(node) if isinstance(node, int | float) and not isinstance(node, bool) else ""


def settings_form(actor: Actor, gw: Mapping[str, Any], latest: Mapping[str, Any] | None) -> str:
    sent = latest["settings"] if latest else {}
    serial = [d for d in gw["devices"] if not str(d.get("source") or "").startswith("tcp://")]
    devices = "".join(
        f"<label>{e(d['device_id'])}: silent after (s) <input name=\"silent_after_s.{e(d['device_id'])}\" "
        f"inputmode=\"decimal\" value=\"{e(_value(sent, 'serial', d['device_id'], 'silent_after_s'))}\"></label>"
        for d in serial)
    return (
        f"<form method=\"post\" action=\"{e(_url(gw['gateway_id'], '/settings'))}\" id=\"settings\" class=\"inline\">"
        f"{_csrf(actor)}"
        f"<label>Status heartbeat (s) <input name=\"heartbeat_s\" inputmode=\"decimal\" "
        f"value=\"{e(_value(sent, 'status', 'heartbeat_s'))}\"></label>"
        f"<label>Live window (s) <input name=\"live_window_s\" inputmode=\"decimal\" "
        f"value=\"{e(_value(sent, 'outbox', 'live_window_s'))}\"></label>{devices}"
        "<button type=\"submit\">Send new version</button></form>"
    )


def versions_table(versions: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr data-version=\"{v['version']}\"><td>v{v['version']}</td>"
        f"<td class=\"state\" data-state=\"{e(v['state'])}\">{e(v['state'])}</td>"
        f"<td class=\"reason\">{e(v['reason'] or '')}</td><td><code>{e(json.dumps(v['settings']))}</code></td>"
        f"<td>{e(v['created_by'])}</td><td><time>{e(iso_from_ms(v['created_ms']))}</time></td>"
        f"<td><time>{e(iso_from_ms(v['acked_ms']) or '')}</time></td></tr>" for v in versions)
    return ("<table class=\"list\" id=\"versions\"><thead><tr><th>Version</th><th>State</th><th>Reason</th>"
            "<th>Settings</th><th>By</th><th>Sent</th><th>Answered</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")


def gateway_page(actor: Actor, gw: Mapping[str, Any], versions: Sequence[Mapping[str, Any]], *,
                 error: str | None = None, note: str | None = None) -> str:
    identity = gw.get("identity") or {}
    revoked = identity.get("revoked")
    problem = f"<p class=\"error\" role=\"alert\">{e(error)}</p>" if error else ""
    told = f"<p class=\"note\" role=\"status\" id=\"note\">{e(note)}</p>" if note else ""
    certificate = (
        "<dl class=\"facts\" id=\"certificate\">"
        f"<dt>Certificate</dt><dd class=\"serial\">{e(identity.get('serial') or 'none issued by HQ')}</dd>"
        f"<dt>Last enrolment</dt><dd><time class=\"enrolled\">{e(identity.get('last_enrolment') or '')}</time></dd>"
        f"<dt>Expires</dt><dd><time class=\"expires\">{e(identity.get('certificate_expires') or '')}</time></dd>"
        f"<dt>Revoked</dt><dd class=\"revoked\">{e(revoked or 'no')}</dd></dl>"
    )
    config = gw.get("config")
    state = (f"<p class=\"config-state\" id=\"config-state\" data-state=\"{e(config['state'])}\">"
             f"{e(config['summary'])}</p>") if config else (
        f"<p class=\"config-state\" id=\"config-state\" data-state=\"local\">Running its TOML file alone "
        f"(v{e(gw['config_version'])}).</p>")
    manage = "" if revoked else (
        f"<h2>HQ-managed settings</h2><p class=\"help\">{e(SETTINGS_HELP)}</p>{state}"
        f"{settings_form(actor, gw, versions[0] if versions else None)}"
        "<h2>Revoke</h2><p class=\"help\">The broker drops the gateway at once and refuses its certificate from "
        "then on; the id can never enrol again (a replacement gets a new id).</p>"
        f"<form method=\"post\" action=\"{e(_url(gw['gateway_id'], '/revoke'))}\" id=\"revoke\" class=\"inline\">"
        f"{_csrf(actor)}<label>Reason <input name=\"reason\" maxlength=\"500\"></label>"
        "<button type=\"submit\" class=\"danger\">Revoke this gateway</button></form>")
    body = (
        f"<h1>Gateway <span class=\"gateway-id\">{e(gw['gateway_id'])}</span></h1>{problem}{told}"
        f"<p class=\"meta\">clinic {e(gw['clinic_id'])} \u00b7 <span class=\"badge {e(gw['status'])}\">"
        f"{e(gw['status'])}</span> \u00b7 software <span class=\"software\">{e(gw['software'])}</span> \u00b7 "
        f"running settings <span class=\"running\">v{e(gw['config_version'])}</span></p>"
        f"{certificate}{manage}<h2>Settings versions</h2>{versions_table(versions)}"
    )
    return html.page(f"Gateway {gw['gateway_id']}", body, page_data={"view": "gateway"}, actor=actor, scripts=())


async def _render(request: web.Request, actor: Actor, gateway_id: str, *, error: str | None = None,
                  note: str | None = None, status: int = 200) -> web.Response:
    gw, versions = await asyncio.to_thread(_gateway_data, request.app[ENGINE], gateway_id)
    if gw is None:
        raise web.HTTPNotFound(text=f"No gateway {gateway_id!r} has reported to HQ.")
    return html.response(gateway_page(actor, gw, versions, error=error, note=note), status=status)


REVOKED_NOTES = {
    "applied": "Gateway revoked. The broker dropped the gateway and denies it every topic.",
    "pending": "Gateway revoked. The broker has not confirmed yet; HQ keeps telling it.",
    "not_configured": "Gateway revoked. The broker refuses it at its next connection, once it reloads the "
                      "revocation list.",
}


@routes.get("/gateways/{gateway_id}")
async def gateway(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    note = None
    if (sent := request.query.get("sent", "")).isdigit():
        note = f"Version {sent} sent; the gateway answers when it receives it."
    elif (state := request.query.get("revoked")) in REVOKED_NOTES:
        note = REVOKED_NOTES[state]
    return await _render(request, actor, request.match_info["gateway_id"], note=note)


def settings_from_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON of a version from the form's fields; an empty field leaves the setting to the TOML file."""
    doc: dict[str, Any] = {}

    def number(name: str) -> float | None:
        text = str(form.get(name, "")).strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise SettingsRefused(400, name, "invalid", f"{name} = {text!r}: expected a number of seconds") from None

    if (heartbeat := number("heartbeat_s")) is not None:
        doc["status"] = {"heartbeat_s": heartbeat}
    if (window := number("live_window_s")) is not None:
        doc["outbox"] = {"live_window_s": window}
    for name in form:
        if str(name).startswith("silent_after_s.") and (seconds := number(str(name))) is not None:
            doc.setdefault("serial", {})[str(name).removeprefix("silent_after_s.")] = {"silent_after_s": seconds}
    return doc


@routes.post("/gateways/{gateway_id}/settings")
async def settings(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    gateway_id = request.match_info["gateway_id"]
    form = await request.post()
    try:
        version = await change_settings(request.app, actor, gateway_id, settings_from_form(form))
    except SettingsRefused as exc:
        return await _render(request, actor, gateway_id, error=str(exc), status=exc.status)
    raise web.HTTPSeeOther(f"{_url(gateway_id)}?sent={version}")  # a reload must not send it again


@routes.post("/gateways/{gateway_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    gateway_id = request.match_info["gateway_id"]
    form = await request.post()
    reason = str(form.get("reason", "")).strip()[:500] or None
    outcome = await revoke_gateway(request.app, actor, gateway_id, reason)
    if outcome is None:
        raise web.HTTPNotFound(text=f"No gateway {gateway_id!r}.")
    raise web.HTTPSeeOther(f"{_url(gateway_id)}?revoked={outcome['broker']['state']}")


# ---- enrolling a new gateway --------------------------------------------------------------------------------
def enrolment_page(actor: Actor, *, token: enrolment.IssuedToken | None = None, error: str | None = None,
                   most_h: float) -> str:
    problem = f"<p class=\"error\" role=\"alert\">{e(error)}</p>" if error else ""
    shown = ""
    if token is not None:
        shown = (
            "<section class=\"token\" id=\"token\"><h2>Token for "
            f"<span class=\"gateway-id\">{e(token.gateway_id)}</span></h2>"
            "<p><strong>Copy it now: HQ keeps only its hash and cannot show it again.</strong> It enrols this "
            f"gateway once and expires at <time>{e(iso_from_ms(token.expires_ms))}</time>.</p>"
            f"<pre class=\"secret\" id=\"token-value\">{e(token.token)}</pre>"
            "<p>On the gateway (or in its Ansible inventory): put it in a file readable by root only and run "
            "<code>clinic-gateway enrol --config /etc/clinic-gateway/gateway.toml --token-file FILE</code>.</p>"
            "</section>")
    body = (
        f"<h1>Enrol a gateway</h1>{problem}{shown}"
        "<form method=\"post\" action=\"/enrolment\" id=\"new-token\" class=\"inline\">"
        f"{_csrf(actor)}<label>Gateway id <input name=\"gateway_id\" required maxlength=\"64\"></label>"
        "<label>Clinic id <input name=\"clinic_id\" required maxlength=\"64\"></label>"
        f"<label>Valid for (hours) <input name=\"ttl_h\" inputmode=\"decimal\" value=\"{most_h:g}\"></label>"
        "<button type=\"submit\">Create token</button></form>"
    )
    return html.page("Enrol a gateway", body, page_data={"view": "enrolment"}, actor=actor, current="/enrolment",
                     scripts=())


@routes.get("/enrolment")
async def enrolment_form(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    return html.response(enrolment_page(actor, most_h=request.app[CONFIG].enrolment.token_ttl_h))


@routes.post("/enrolment")
async def create_token(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    form = await request.post()
    most_h = request.app[CONFIG].enrolment.token_ttl_h
    hours: Any = str(form.get("ttl_h", "")).strip()
    with contextlib.suppress(ValueError):
        hours = float(hours)
    try:
        ttl_h = ttl_h_of({"ttl_h": hours} if hours != "" else {}, most_h)
        token = await issue_token(request.app, actor, str(form.get("gateway_id", "")).strip(),
                                  str(form.get("clinic_id", "")).strip(), ttl_h)
    except RequestError as exc:
        return html.response(enrolment_page(actor, error=exc.message, most_h=most_h), status=400)
    except enrolment.EnrolmentError as exc:
        return html.response(enrolment_page(actor, error=str(exc), most_h=most_h), status=400)
    return html.response(enrolment_page(actor, token=token, most_h=most_h))
