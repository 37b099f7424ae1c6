"""The console's WebSocket at /ws: a client subscribes, then receives observations and gateway changes.

Client -> HQ: {"subscribe": {"patient_id"?, "clinic_id"?, "kinds"?: [...]}} (an empty object: everything).
HQ -> client: {"type": "subscribed", ...}, {"type": "observations", "items": [...]},
{"type": "gateway", "gateway": {...}}, {"type": "error", "error": "..."}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from gateway import wire
from hq.appkeys import HUB, SOCKETS
from hq.live import DEFAULT_KINDS, LiveClient, Subscription

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


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
    unknown = set(spec) - {"patient_id", "clinic_id", "kinds"}
    if unknown:
        raise SubscriptionError(f"unknown subscription keys {sorted(unknown)}; expected patient_id, clinic_id, kinds")
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
    return Subscription(patient_id=spec.get("patient_id"), clinic_id=spec.get("clinic_id"), kinds=kind_set)


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {"patient_id": sub.patient_id, "clinic_id": sub.clinic_id, "kinds": sorted(sub.kinds)}


async def _pump(client: LiveClient, ws: web.WebSocketResponse) -> None:
    while True:
        message = await client.next()
        await ws.send_str(json.dumps(message, separators=(",", ":")))


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    hub = request.app[HUB]
    client = hub.connect()
    pump = asyncio.create_task(_pump(client, ws))
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
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump
        hub.disconnect(client)
    return ws
