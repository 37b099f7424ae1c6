"""The console's WebSocket at /ws: a client subscribes, then receives observations and gateway changes.

Client -> HQ: {"subscribe": {"patient_id"?, "clinic_id"?, "kinds"?: [...], "patients"?: [{"clinic_id", "patient_id"},
...]}} (an empty object: everything; "patients": one HQ patient's record numbers at several clinics).
HQ -> client: {"type": "subscribed", ...}, {"type": "observations", "items": [...]},
{"type": "gateway", "gateway": {...}}, {"type": "error", "error": "..."}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import sqlalchemy as sa
from aiohttp import WSCloseCode, WSMsgType, web

from gateway import wire
from hq import accounts
from hq.appkeys import ENGINE, HUB, SOCKETS
from hq.auth import Actor, Role, require
from hq.live import DEFAULT_KINDS, Audience, LiveClient, Subscription

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
SESSION_CHECK_S = 5.0
LIVE_CLIENT: web.ResponseKey[LiveClient] = web.ResponseKey("live_client")


class SubscriptionError(ValueError):
    """A client's subscription message is not of the documented form."""


def parse_subscription(text: str) -> Subscription:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise SubscriptionError(f"message is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "subscribe" not in doc:
        raise SubscriptionError('expected {"subscribe": {...}}')
    spec = doc["subscribe"]
    if spec == "all":
        return Subscription()
    if not isinstance(spec, dict):
        raise SubscriptionError('"subscribe" must be an object (or "all")')
    unknown = set(spec) - {"patient_id", "clinic_id", "kinds", "patients"}
    if unknown:
        raise SubscriptionError(f"unknown subscription keys {sorted(unknown)}; expected patient_id, clinic_id, kinds, "
                                "patients")
    for key in ("patient_id", "clinic_id"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise SubscriptionError(f"{key} must be a string")
    kinds = spec.get("kinds")
    if kinds is None:
        kind_set = DEFAULT_KINDS
    elif isinstance(kinds, list) and all(k in wire.KINDS for k in kinds):
        kind_set = frozenset(kinds)
    else:
        raise SubscriptionError(f"kinds must be a list of {sorted(wire.KINDS)}")
    return Subscription(patient_id=spec.get("patient_id"), clinic_id=spec.get("clinic_id"), kinds=kind_set,
                        patients=_patient_pairs(spec.get("patients")))


MAX_SUBSCRIBED_PATIENTS = 50


def _patient_pairs(value: Any) -> frozenset[tuple[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SUBSCRIBED_PATIENTS or not all(
            isinstance(p, dict) and set(p) == {"clinic_id", "patient_id"}
            and all(isinstance(v, str) for v in p.values()) for p in value):
        raise SubscriptionError(f"patients must be a list of at most {MAX_SUBSCRIBED_PATIENTS} "
                                '{"clinic_id": ..., "patient_id": ...} objects')
    return frozenset((p["clinic_id"], p["patient_id"]) for p in value)


def subscription_json(sub: Subscription) -> dict[str, Any]:
    doc: dict[str, Any] = {"patient_id": sub.patient_id, "clinic_id": sub.clinic_id, "kinds": sorted(sub.kinds)}
    if sub.patients is not None:
        doc["patients"] = [{"clinic_id": c, "patient_id": p} for c, p in sorted(sub.patients)]
    return doc


async def _pump(client: LiveClient, ws: web.WebSocketResponse) -> None:
    while True:
        message = await client.next()
        await ws.send_str(json.dumps(message, separators=(",", ":")))


def audience_of(actor: Actor) -> Audience:
    return Audience(user_id=actor.user_id, role=str(actor.role),
                    clinic_id=None if actor.sees_all_clinics else actor.clinic_id,
                    observations=actor.sees_all_clinics or actor.role is Role.CLINIC_STAFF)


async def _watch_session(request: web.Request, actor: Actor, ws: web.WebSocketResponse) -> None:
    """A logged-out or deactivated user's socket closes within SESSION_CHECK_S, on every HQ worker."""
    engine = request.app[ENGINE]
    while not ws.closed:
        await asyncio.sleep(SESSION_CHECK_S)
        if actor.session_id is None:
            continue
        alive = await asyncio.to_thread(_session_alive, engine, actor.session_id)
        if not alive:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session ended")
            return


def _session_alive(engine: sa.Engine, session_id: str) -> bool:
    with engine.connect() as conn:
        return accounts.session_alive(conn, session_id)


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    actor = await require(request)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    hub = request.app[HUB]
    client = hub.connect(audience_of(actor))
    ws[LIVE_CLIENT] = client  # so that deactivating the user can find and close this socket
    pump = asyncio.create_task(_pump(client, ws))
    watch = asyncio.create_task(_watch_session(request, actor, ws))
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                client.subscription = parse_subscription(msg.data)
            except SubscriptionError as exc:
                await ws.send_json({"type": "error", "error": str(exc)})
                continue
            await ws.send_json({"type": "subscribed", "subscription": subscription_json(client.subscription)})
    finally:
        for task in (pump, watch):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        hub.disconnect(client)
    return ws
