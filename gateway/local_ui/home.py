"""The staff screen's home page: the devices and their state, the patients being monitored with a one-click
emergency button each (and one for no particular patient), and this clinic's recent consultations.

Markup and its JSON twin only: the click itself is handled by `consultation_pages`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.consultations import Delivery, clock_ms, describe
from gateway.latest_readings import Monitored
from gateway.local_ui.shell import GATEWAY, e, listing, page, response

routes = web.RouteTableDef()


def emergency_button(monitored: Monitored | None) -> str:
    mrn = "" if monitored is None else monitored.patient_id
    label = "Emergency: call an expert now" if monitored else "Emergency (no patient selected)"
    devices = "" if monitored is None else "".join(
        f"<input type=\"hidden\" name=\"device\" value=\"{e(d)}\">" for d in monitored.devices)
    return ("<form method=\"post\" action=\"/emergency\" class=\"emergency\">"
            f"<input type=\"hidden\" name=\"mrn\" value=\"{e(mrn)}\">{devices}"
            f"<button type=\"submit\" class=\"sos\" data-mrn=\"{e(mrn)}\">{e(label)}</button></form>")


def consultation_item(row: dict[str, Any], link_up: bool) -> str:
    state, text = describe(row, Delivery(row["request_queued"], link_up))
    who = f" \u00b7 patient {e(row['mrn'])}" if row.get("mrn") else ""
    return (f"<li class=\"consultation state-{e(state)}\" data-public-id=\"{e(row['public_id'])}\">"
            f"<a href=\"/consultations/{e(row['public_id'])}\">{e(row['kind'])}{who}</a> "
            f"<span class=\"state\" data-state=\"{e(state)}\">{e(text)}</span></li>")


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    now = clock_ms()
    devices = "".join(
        f"<li class=\"device state-{e(h.state)}\" data-device=\"{e(h.device_id)}\">{e(h.device_id)} "
        f"<small>{e(h.protocol)} \u00b7 {e(h.source)}</small> <span class=\"badge\">{e(h.state)}</span></li>"
        for h in gw.devices.values()) or "<li class=\"empty\">No devices configured.</li>"
    patients = "".join(
        f"<li class=\"patient\" data-mrn=\"{e(m.patient_id)}\"><strong>{e(m.patient_id)}</strong> "
        f"<small>{e(', '.join(m.devices))}</small>{emergency_button(m)}</li>"
        for m in gw.readings.monitored(now)) or "<li class=\"empty\">No patient has current readings.</li>"
    recent = await gw.consultations.recent(10)
    items = "".join(consultation_item(r, gw.link.is_connected) for r in recent)
    body = (
        f"<section class=\"sos-general\">{emergency_button(None)}</section>"
        f"<h2>Patients being monitored</h2><ul class=\"patients\" id=\"patients\">{patients}</ul>"
        f"<h2>Consultations</h2><ul class=\"consultations\" id=\"consultations\">"
        f"{listing(items, 'None yet.')}</ul>"
        f"<h2>Devices</h2><ul class=\"devices\" id=\"devices\">{devices}</ul>"
    )
    return response(page(gw, "Home", body, current="/", page_data={"view": "home"}))
