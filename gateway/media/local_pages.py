"""The call on the clinic's own screen, served by the gateway on the LAN: the experts' voices and pictures, the
cameras as the experts see them, the clinic's microphone, the consent to record.

The screen does WebRTC with the gateway directly on the LAN (no STUN, no HQ): it posts an offer with its ICE
candidates gathered and gets the answer back. Its own routes only; the rest of the local UI is elsewhere.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import wire
from gateway.media.peer import OfferError
from gateway.media.room import CallFull
from gateway.media.service import MediaService
from gateway.wire import SlotRole

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MEDIA = web.AppKey("media", MediaService)
MAX_BODY_BYTES = wire.MAX_SDP_BYTES + 4096


def clinic_slots(cameras: int, remote_parties: int) -> tuple[SlotRole, ...]:
    """The clinic screen's layout: the cameras (what the experts see), its microphone, each remote party."""
    return ((SlotRole.CAMERA,) * max(1, cameras) + (SlotRole.SEND_AUDIO,)
            + (SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO) * remote_parties)


def register(app: web.Application, media: MediaService) -> None:
    app[MEDIA] = media
    app.router.add_get("/call", calls_page)
    app.router.add_get("/call/{consultation_id}", call_page)
    app.router.add_get("/api/v1/calls", list_calls)
    app.router.add_get("/api/v1/calls/{consultation_id}", call_state)
    app.router.add_post("/api/v1/calls/{consultation_id}/offer", offer)
    app.router.add_post("/api/v1/calls/{consultation_id}/leave", leave)
    app.router.add_post("/api/v1/calls/{consultation_id}/consent", consent)
    app.router.add_static("/call-static/", STATIC_DIR, name="call-static")


def _consultation(request: web.Request) -> str:
    consultation_id = request.match_info["consultation_id"]
    if not wire.valid_id(consultation_id):
        raise web.HTTPBadRequest(text=json.dumps({"error": f"consultation id {consultation_id!r} is not valid"}),
                                 content_type="application/json")
    return consultation_id


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body is not JSON"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}),
                                 content_type="application/json")
    return body


async def calls_page(request: web.Request) -> web.Response:
    media = request.app[MEDIA]
    items = "".join(f'<li><a href="/call/{escape(c)}">{escape(c)}</a> ({len(r.peers)} connected)</li>'
                    for c, r in media.rooms.items())
    body = (f"<h1>Calls</h1><ul id=\"calls\">{items or '<li>No call is open.</li>'}</ul>"
            "<form action=\"/call\" method=\"get\" id=\"open-call\"><label>Consultation "
            "<input name=\"c\" required pattern=\"[A-Za-z0-9._-]{1,64}\"></label> <button>Open</button></form>")
    target = request.query.get("c")
    if target and wire.valid_id(target):
        raise web.HTTPFound(f"/call/{target}")
    return _page("Calls", body, {})


async def call_page(request: web.Request) -> web.Response:
    consultation_id = _consultation(request)
    media = request.app[MEDIA]
    slots = clinic_slots(len(media.cameras), media.media.max_remote_parties)
    names = wire.slot_names(slots)
    tiles = []
    for role, name in zip(slots, names, strict=True):
        if role is SlotRole.CAMERA:
            tiles.append(f'<figure class="tile camera" data-slot="{name}"><video muted autoplay playsinline></video>'
                         f'<figcaption>camera</figcaption></figure>')
        elif role is SlotRole.PARTY_VIDEO:
            tiles.append(f'<figure class="tile party" data-slot="{name}"><video autoplay playsinline muted></video>'
                         f'<figcaption>waiting</figcaption></figure>')
        elif role is SlotRole.PARTY_AUDIO:
            tiles.append(f'<audio data-slot="{name}" autoplay></audio>')
    body = (f"<h1>Call <span id=\"consultation\">{escape(consultation_id)}</span></h1>"
            "<p class=\"status\">connection <strong id=\"connection\">new</strong> · "
            "recording <strong id=\"recording\">off</strong> <span id=\"note\"></span></p>"
            "<p><label><input type=\"checkbox\" id=\"consent\"> The patient consents to recording this "
            "consultation</label> <button id=\"leave\">Leave</button></p>"
            f"<div class=\"tiles\">{''.join(tiles)}</div>")
    return _page(f"Call {consultation_id}", body, {"consultation": consultation_id, "slots": [str(s) for s in slots]})




def _page(title: str, body: str, data: dict[str, Any]) -> web.Response:
    text = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><link rel=\"stylesheet\" href=\"/call-static/local_call.css\"></head>"
            f"<body data-page=\"{escape(json.dumps(data))}\"><main>{body}</main>"
            "<script src=\"/call-static/local_call.js\"></script></body></html>")
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"})


async def list_calls(request: web.Request) -> web.Response:
    media = request.app[MEDIA]
    return web.json_response({"calls": [{"consultation_id": c, "participants": len(r.peers),
                                         "recording": r.recording, "consent": r.consent}
                                        for c, r in media.rooms.items()]})


async def call_state(request: web.Request) -> web.Response:
    consultation_id = _consultation(request)
    room = request.app[MEDIA].rooms.get(consultation_id)
    if room is None:
        return web.json_response({"consultation_id": consultation_id, "open": False})
    peer = room.peers.get(request.query.get("peer", ""))
    state = wire.call_state_json(room.state_for(peer)) if peer is not None else None
    return web.json_response({
        "consultation_id": consultation_id, "open": True, "recording": room.recording, "consent": room.consent,
        "note": room.recording_note, "state": state,
        "participants": [{"peer": p.peer_id, "name": p.party.name, "role": p.party.role, "local": p.local,
                          "connection": p.state} for p in room.peers.values()]})


async def offer(request: web.Request) -> web.Response:
    consultation_id = _consultation(request)
    body = await _json_body(request)
    sdp, peer, name = body.get("sdp"), body.get("peer"), body.get("name", "Clinic screen")
    if not isinstance(sdp, str) or not sdp or len(sdp) > wire.MAX_SDP_BYTES:
        return _bad("'sdp' must be the offer's SDP")
    if peer is not None and not wire.valid_id(peer):
        return _bad("'peer' must be the id this screen was given, or absent")
    if not isinstance(name, str):
        return _bad("'name' must be a string")
    try:
        slots = tuple(SlotRole(s) for s in body.get("slots", []))
    except (ValueError, TypeError):
        return _bad(f"'slots' must be a list of {', '.join(r.value for r in SlotRole)}")
    media = request.app[MEDIA]
    try:
        peer_id, answer = await media.join_local(consultation_id, peer, name[:100], slots, sdp)
    except (OfferError, CallFull) as exc:
        return _bad(str(exc), 409 if isinstance(exc, CallFull) else 400)
    return web.json_response({"peer": peer_id, "sdp": answer})


async def leave(request: web.Request) -> web.Response:
    consultation_id = _consultation(request)
    body = await _json_body(request)
    peer = body.get("peer")
    if not isinstance(peer, str):
        return _bad("'peer' must be this screen's peer id")
    await request.app[MEDIA].leave_local(consultation_id, peer)
    return web.json_response({"left": True})


async def consent(request: web.Request) -> web.Response:
    consultation_id = _consultation(request)
    body = await _json_body(request)
    value = body.get("consent")
    if not isinstance(value, bool):
        return _bad("'consent' must be true or false")
    media = request.app[MEDIA]
    if consultation_id not in media.rooms:
        return _bad(f"no call is open for consultation {consultation_id}", 404)
    await media.set_consent(consultation_id, value)
    return web.json_response({"consent": value})
