"""The staff screen's shell: the common layout (header with the HQ link's state, the navigation list, one CSS
and one JS file), HTML escaping, and the response headers every page gets.

Layout only: pages build their bodies from plain data in their own modules and add one line to `NAV`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from gateway.app import Gateway

STATIC_DIR = Path(__file__).parent / "static"
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")

SAFETY_NOTICE = ("Forwarding to HQ is secondary and informational. The bedside monitor remains the primary "
                 "alarm system; in an emergency, act on the spot first.")


@dataclass(frozen=True, slots=True)
class NavItem:
    href: str
    label: str


# The screen's pages in the order of the navigation list; each page module adds its one line here.
NAV: tuple[NavItem, ...] = (
    NavItem("/", "Home"),
    NavItem("/checkin", "Check-in"),
    NavItem("/consultations", "Consultations"),
    NavItem("/notices", "Notices from HQ"),
    NavItem("/appointments", "Appointments"),
)

CSP = ("default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "frame-src 'self'; frame-ancestors 'self'; form-action 'self'")


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


def nav(current: str) -> str:
    marked = ' class="current"'
    items = "".join(f"<li><a href=\"{e(item.href)}\"{marked if item.href == current else ''}>"
                    f"{e(item.label)}</a></li>" for item in NAV)
    return f"<nav class=\"sections\"><ul>{items}</ul></nav>"


def page(gateway: Gateway, title: str, body: str, *, current: str = "",
         page_data: Mapping[str, Any] | None = None) -> str:
    """The common layout around a page's body. `page_data` goes to screen.js as JSON (escaped)."""
    g = gateway.config.gateway
    link_up = gateway.link.is_connected
    link = ("<span class=\"link up\" id=\"link-state\">HQ link: connected</span>" if link_up else
            "<span class=\"link down\" id=\"link-state\">HQ link: offline (work is queued and sent later)</span>")
    data = {"view": "", **(page_data or {})}
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{e(title)} \u00b7 {e(g.clinic_id)}</title><link rel=\"stylesheet\" href=\"/static/screen.css\">"
        f"</head><body data-page=\"{e(json.dumps(data))}\">"
        f"<header class=\"top\"><span class=\"brand\">{e(g.clinic_id)}</span> <small>gateway {e(g.id)}</small>"
        f"{link}</header>{nav(current)}"
        f"<p class=\"safety\" role=\"note\">{e(SAFETY_NOTICE)}</p>"
        f"<main>{body}</main><script src=\"/static/screen.js\"></script></body></html>\n"
    )


def check_same_origin(request: web.Request) -> None:
    """Unsafe requests from another site's page (a browser on the LAN visiting a hostile page) are refused."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text=f"request from another origin ({origin}) refused")


def listing(items: str, when_empty: str) -> str:
    """List items, or one item saying there are none."""
    return items or f"<li class=\"empty\">{e(when_empty)}</li>"


def error_block(message: str | None) -> str:
    return f"<p class=\"error\" role=\"alert\">{e(message)}</p>" if message else ""


def json_error(message: str, status: int = 400) -> web.Response:
    field = message.split(":", 1)[0].split()[0] if ":" in message else None
    return web.json_response({"error": message, "field": field}, status=status)
