"""The staff screen's appointments page: this clinic's booked consultations with remote experts, in the clinic's
own time (the gateway's configured zone), with their confirmations and reminders from HQ; readable with HQ
unreachable. `/api/v1/appointments` is its JSON twin.

Markup only: `gateway.appointments` folds the inbox's notices into appointments.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway import appointment_wire as aw
from gateway import appointments
from gateway.consultations import clock_ms
from gateway.local_ui.shell import GATEWAY, e, listing, page, response

routes = web.RouteTableDef()

NOTICES_READ = 500
STATUS_TEXT = {"booked": "booked", "pending_approval": "waiting for a department head at HQ",
               "rejected": "not approved", "cancelled": "cancelled"}


def clinic_time(ms: int, tz: ZoneInfo) -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    return f"{t:%a} {t.day} {t:%b %H:%M %Z}"


def appointment_json(a: appointments.ClinicAppointment) -> dict[str, Any]:
    return {**a.notice.body(), "last_notice": a.notice.kind, "received_ms": a.received_ms,
            "reminded_ms": a.reminded_ms}


async def _current(request: web.Request) -> tuple[list[appointments.ClinicAppointment], ZoneInfo]:
    gw = request.app[GATEWAY]
    stored = await gw.inbox.recent(limit=NOTICES_READ, kinds=aw.NOTICE_KINDS)
    return appointments.upcoming(appointments.fold(stored), clock_ms()), ZoneInfo(gw.config.gateway.timezone)


@routes.get("/appointments")
async def appointments_page(request: web.Request) -> web.Response:
    found, tz = await _current(request)
    items = "".join(
        f"<li class=\"appointment status-{e(a.notice.status)}\" data-appointment=\"{a.appointment_id}\">"
        f"<strong>{e(clinic_time(a.notice.start_ms, tz))}</strong> \u2013 {e(clinic_time(a.notice.end_ms, tz))} "
        f"{e(a.notice.expert_name)} <small>{e(a.notice.expert_title)} {e(a.notice.hospital)} \u00b7 "
        f"{e(a.notice.department)}</small>"
        + (f" \u00b7 patient {e(a.notice.patient_mrn)}" if a.notice.patient_mrn else "")
        + f" <span class=\"state\" data-state=\"{e(a.notice.status)}\">{e(STATUS_TEXT.get(a.notice.status, ''))}"
          "</span>"
        + (" <span class=\"reminded\">reminded</span>" if a.reminded_ms else "")
        + f"<br><small class=\"text\">{e(a.notice.text)}</small>"
        + (f" <small class=\"note\">{e(a.notice.note)}</small>" if a.notice.note else "") + "</li>"
        for a in found)
    body = (f"<h1>Appointments</h1><p>Times are clinic time ({e(tz.key)}).</p>"
            f"<ul class=\"appointments\" id=\"appointments\">{listing(items, 'No upcoming appointments.')}</ul>")
    gw = request.app[GATEWAY]
    return response(page(gw, "Appointments", body, current="/appointments", page_data={"view": "appointments"}))


@routes.get("/api/v1/appointments")
async def appointments_api(request: web.Request) -> web.Response:
    found, tz = await _current(request)
    return web.json_response({"time_zone": tz.key, "appointments": [appointment_json(a) for a in found]})
