"""Mounts the staff screen on the gateway's local web app: every page module's routes and the static files.

Wiring only; a page module adds its `routes` to `PAGE_ROUTES` (and its link to `shell.NAV`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from gateway.local_ui import appointments, checkin, consultation_pages, home, notices
from gateway.local_ui.shell import GATEWAY, STATIC_DIR

if TYPE_CHECKING:
    from gateway.app import Gateway

PAGE_ROUTES: tuple[web.RouteTableDef, ...] = (
    home.routes,
    consultation_pages.routes,
    notices.routes,
    appointments.routes,
    checkin.routes,
)


def install(app: web.Application, gateway: Gateway) -> None:
    app[GATEWAY] = gateway
    for routes in PAGE_ROUTES:
        app.add_routes(routes)
    app.router.add_static("/static/", STATIC_DIR, name="static")
