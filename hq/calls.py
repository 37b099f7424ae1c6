"""Calls at HQ: the signalling relay between a participant's browser (a WebSocket per participant) and the
clinic's gateway (MQTT), per consultation; live call quality and alerts to everyone watching the call.

HQ decides who joins and hands out the ICE servers (with time-limited TURN credentials), then relays offers,
answers and candidates; media flows browser <-> gateway and never through HQ. A participant whose socket drops
(a change of network) resumes with their peer id and token within `calls.resume_grace_s`, on any HQ worker,
without re-joining. Not the gateway's side (`gateway.media`), nor the recordings (`hq.recordings`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiohttp import WSMsgType, web

from gateway import wire
from gateway.mqttlink import Message, MqttError, MqttLink
from gateway.prometheus import Family
from gateway.wire import CallSignal, IceCandidate, IceServer, Party, SignalType, SlotRole
from hq import audit, call_store, openapi
from hq.appkeys import CALLS, CONFIG, ENGINE
from hq.auth import current_actor, forbidden
from hq.call_access import Caller, caller_of
from hq.call_quality import Thresholds
from hq.call_store import ConsultationRef
from hq.clock import iso_from_ms, now_ms
from hq.config import CallsSection
from hq.console import html
from hq.console.call_page import call_page_html
from hq.recordings import recordings_for

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = wire.MAX_SDP_BYTES + 8192
RETENTION_SWEEP_S = 3600.0


# ---- ICE servers -----------------------------------------------------------------------------
def turn_credentials(secret: str, user: str, now_s: int, ttl_s: int) -> tuple[str, str]:
    """A TURN REST API credential (coturn `use-auth-secret`): valid until now + ttl, for `user`."""
    username = f"{now_s + ttl_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(calls: CallsSection, secret: str | None, user: str, now_s: int) -> tuple[IceServer, ...]:
    servers = [IceServer(tuple(calls.stun_urls))] if calls.stun_urls else []
    if calls.turn_urls and secret is not None:
        username, credential = turn_credentials(secret, user, now_s, calls.turn_credential_ttl_s)
        servers.append(IceServer(tuple(calls.turn_urls), username, credential))
    return tuple(servers)


def ice_servers_json(servers: tuple[IceServer, ...]) -> list[dict[str, Any]]:
    return [{"urls": list(s.urls), **({"username": s.username, "credential": s.credential} if s.username else {})}
            for s in servers]


def participant_slots(calls: CallsSection) -> tuple[SlotRole, ...]:
    """What a remote participant's screen shows: the clinic's cameras and voice, their own microphone and
    camera going out, and every other participant's voice and picture."""
    return ((SlotRole.CAMERA,) * calls.camera_slots + (SlotRole.CLINIC_AUDIO, SlotRole.SEND_AUDIO,
                                                        SlotRole.SEND_VIDEO)
            + (SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO) * calls.party_slots)


# ---- the relay -------------------------------------------------------------------------------
@dataclass(eq=False)
class LivePeer:
    """A participant whose socket is on this worker."""

    peer_id: str
    consultation: ConsultationRef
    caller: Caller
    ws: web.WebSocketResponse
    attached_ms: int = field(default_factory=now_ms)


class CallRelay:
    def __init__(self, engine: sa.Engine, link: MqttLink, calls: CallsSection) -> None:
        self.engine = engine
        self.link = link
        self.calls = calls
        self.limits = Thresholds(calls.alert_loss_pct, calls.alert_rtt_ms, calls.alert_jitter_ms, calls.alert_min_fps)
        self.turn_secret = (calls.turn_secret_file.read_text(encoding="utf-8").strip()
                            if calls.turn_secret_file is not None else None)
        self.peers: dict[str, LivePeer] = {}
        self.watchers: dict[str, weakref.WeakSet[web.WebSocketResponse]] = {}
        self.signals_relayed = 0
        self.samples_stored = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.HQ_CALL_SUBSCRIPTION, 1), (wire.HQ_CALLSTATS_SUBSCRIPTION, 0)]

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- from the gateways -------------------------------------------------------------
    def on_message(self, message: Message) -> None:
        if message.topic.endswith("/up/call"):
            self._from_gateway(message)
        elif message.topic.endswith("/up/callstats"):
            self._quality(message)

    def _from_gateway(self, message: Message) -> None:
        try:
            gateway_id = wire.gateway_of_topic(message.topic)
            signal = wire.decode_call_signal(message.payload)
        except wire.WireError as exc:
            log.warning("rejected call signal on %s: %s", message.topic, exc)
            return
        peer = self.peers.get(signal.peer_id)
        if peer is None or peer.consultation.gateway_id != gateway_id:
            return  # another worker holds this participant's socket (or nobody does any more)
        doc: dict[str, Any] = {"type": str(signal.type)}
        if signal.sdp is not None:
            doc["sdp"] = signal.sdp
        if signal.type is SignalType.CANDIDATE:
            c = signal.candidate
            doc["candidate"] = None if c is None else {"candidate": c.candidate, "sdpMid": c.sdp_mid,
                                                       "sdpMLineIndex": c.sdp_mline_index}
        if signal.reason is not None:
            doc["reason"] = signal.reason
        if signal.state is not None:
            doc["state"] = wire.call_state_json(signal.state)
        self.signals_relayed += 1
        self._spawn(_send(peer.ws, doc))

    def _quality(self, message: Message) -> None:
        try:
            gateway_id = wire.gateway_of_topic(message.topic)
            quality = wire.decode_call_quality(message.payload)
        except wire.WireError as exc:
            log.warning("rejected call quality on %s: %s", message.topic, exc)
            return
        self._spawn(self._store_quality(gateway_id, quality))

    async def _store_quality(self, gateway_id: str, quality: wire.CallQuality) -> None:
        # Live figures first: they need no database, and a busy database must not hold them back.
        self.broadcast(quality.consultation_id, {"type": "quality", **quality_json(quality)})

        def store() -> call_store.QualityResult:
            with self.engine.begin() as conn:
                return call_store.store_quality(conn, gateway_id, quality, self.limits, now_ms())

        try:
            result = await asyncio.to_thread(store)
        except sa.exc.SQLAlchemyError as exc:
            log.error("call quality of %s not stored: %s", quality.consultation_id, exc)
            result = call_store.QualityResult(0, [], [])
        self.samples_stored += result.stored
        for alert in result.opened:
            log.warning("call %s: %s alert for %s %s (%.1f, threshold %.1f)", quality.consultation_id, alert["kind"],
                        alert["peer_id"], alert["stream"] or "connection", alert["value"], alert["threshold"])
        if result.opened or result.closed:
            self.broadcast(quality.consultation_id, {"type": "alerts", "opened": [alert_json(a) for a in result.opened],
                                                     "closed": [alert_json(a) for a in result.closed]})

    def broadcast(self, consultation_id: str, doc: dict[str, Any]) -> None:
        for ws in list(self.watchers.get(consultation_id, ())):
            self._spawn(_send(ws, doc))

    # ---- to the gateways ----------------------------------------------------------------
    async def _publish(self, peer: LivePeer, kind: SignalType, **fields: Any) -> None:
        gateway_id = peer.consultation.gateway_id
        assert gateway_id is not None
        signal = CallSignal(kind, peer.consultation.public_id, peer.peer_id, now_ms(), **fields)
        await self.link.publish(wire.call_down_topic(gateway_id), wire.encode_call_signal(signal), qos=1)

    # ---- a participant's socket -----------------------------------------------------------
    async def serve(self, request: web.Request, public_id: str) -> web.WebSocketResponse:
        caller = await caller_of(request, public_id)
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            # The handshake carries the session cookie: a page of another site must not open a call in its name.
            raise forbidden(request, f"call socket opened from another origin ({origin})")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        consultation = await asyncio.to_thread(self._find, public_id)
        if consultation is None:
            await ws.send_json({"type": "error", "reason": f"there is no consultation {public_id}"})
            await ws.close()
            return ws
        self.watchers.setdefault(public_id, weakref.WeakSet()).add(ws)
        live: LivePeer | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    doc = json.loads(msg.data)
                    if not isinstance(doc, dict):
                        raise ValueError("not an object")
                except ValueError:
                    await ws.send_json({"type": "error", "reason": "messages must be JSON objects"})
                    continue
                try:
                    live = await self._handle(caller, ws, consultation, live, doc)
                except MqttError as exc:
                    await ws.send_json({"type": "error", "reason": f"the clinic cannot be reached: {exc}"})
                except CallRefused as exc:
                    await ws.send_json({"type": "error", "reason": str(exc)})
        finally:
            if live is not None and self.peers.get(live.peer_id) is live:
                del self.peers[live.peer_id]
                self._spawn(self._after_drop(live))
        return ws

    def _find(self, public_id: str) -> ConsultationRef | None:
        with self.engine.connect() as conn:
            return call_store.find_consultation(conn, public_id)

    async def _handle(self, caller: Caller, ws: web.WebSocketResponse, consultation: ConsultationRef,
                      live: LivePeer | None, doc: dict[str, Any]) -> LivePeer | None:
        kind = doc.get("type")
        if kind == "join":
            return await self._join(caller, ws, consultation, doc)
        if live is None:
            raise CallRefused("join the call first")
        if kind == "offer":
            sdp = doc.get("sdp")
            if not isinstance(sdp, str) or not sdp or len(sdp) > wire.MAX_SDP_BYTES:
                raise CallRefused("an offer needs its 'sdp'")
            fresh = await asyncio.to_thread(self._find, consultation.public_id)
            if fresh is None or not fresh.gateway_online:
                raise CallRefused("the clinic's gateway is offline: the call cannot start now")
            servers = ice_servers(self.calls, self.turn_secret, f"gw.{consultation.gateway_id}", int(time.time()))
            await self._publish(live, SignalType.OFFER, sdp=sdp, slots=participant_slots(self.calls),
                                ice_servers=servers, relay_only=self.calls.relay_only,
                                party=Party(live.caller.name, live.caller.role))
        elif kind == "candidate":
            raw = doc.get("candidate")
            candidate = None
            if raw is not None:
                if not isinstance(raw, dict) or not isinstance(raw.get("candidate"), str):
                    raise CallRefused("a candidate is {candidate, sdpMid, sdpMLineIndex} or null")
                candidate = IceCandidate(raw["candidate"], raw.get("sdpMid"), raw.get("sdpMLineIndex"))
            await self._publish(live, SignalType.CANDIDATE, candidate=candidate)
        elif kind == "leave":
            await self._leave(live, "left the call")
            return None
        else:
            raise CallRefused(f"unknown message type {kind!r}; expected join, offer, candidate or leave")
        return live

    async def _join(self, caller: Caller, ws: web.WebSocketResponse, consultation: ConsultationRef,
                    doc: dict[str, Any]) -> LivePeer:
        if consultation.gateway_id is None:
            raise CallRefused("no gateway of this consultation's clinic has reported to HQ")
        asked_peer, asked_token = doc.get("peer"), doc.get("token")
        now = now_ms()
        resumed = None
        if isinstance(asked_peer, str) and isinstance(asked_token, str):
            def resume(peer: str, token: str) -> dict[str, Any] | None:
                with self.engine.begin() as conn:
                    return call_store.resume_participant(conn, peer_id=peer, token=token, user_id=caller.user_id,
                                                         public_id=consultation.public_id, now_ms=now,
                                                         grace_ms=int(self.calls.resume_grace_s * 1000))
            resumed = await asyncio.to_thread(resume, asked_peer, asked_token)
        if resumed is not None:
            peer_id, token = str(asked_peer), str(asked_token)
        else:
            peer_id, token = "p-" + secrets.token_hex(8), secrets.token_urlsafe(24)

            def add() -> None:
                with self.engine.begin() as conn:
                    call_store.add_participant(conn, peer_id=peer_id, consultation=consultation,
                                               user_id=caller.user_id, name=caller.name, role=caller.role,
                                               token=token, now_ms=now)
                    # Joining a call is an access to the patient's record: audited with the join itself.
                    audit.record(conn, caller.label, "call.join", "consultation", consultation.public_id,
                                 clinic_id=consultation.clinic_id, detail={"peer": peer_id})
            await asyncio.to_thread(add)
        previous = self.peers.get(peer_id)
        if previous is not None and previous.ws is not ws:
            await previous.ws.close()  # the same participant from a new socket: the old one is stale
        live = LivePeer(peer_id, consultation, caller, ws)
        self.peers[peer_id] = live
        servers = ice_servers(self.calls, self.turn_secret, f"p.{peer_id}", int(time.time()))
        await ws.send_json({"type": "joined", "peer": peer_id, "token": token, "resumed": resumed is not None,
                            "name": caller.name, "gateway_id": consultation.gateway_id,
                            "gateway_online": consultation.gateway_online,
                            "ice_servers": ice_servers_json(servers), "relay_only": self.calls.relay_only,
                            "slots": [str(s) for s in participant_slots(self.calls)]})
        log.info("call %s: %s %s (%s)", consultation.public_id, "resumed" if resumed else "joined", peer_id,
                 caller.role)
        return live

    async def _leave(self, live: LivePeer, reason: str) -> None:
        self.peers.pop(live.peer_id, None)
        with contextlib.suppress(MqttError):
            await self._publish(live, SignalType.BYE, reason=reason)

        def mark() -> None:
            with self.engine.begin() as conn:
                call_store.leave_participant(conn, live.peer_id, now_ms())
        await asyncio.to_thread(mark)

    async def _after_drop(self, live: LivePeer) -> None:
        """A socket closed without a goodbye: the participant may be changing networks. Only if they have not
        come back (here or on another worker) within the grace is the gateway told they left."""
        dropped_ms = now_ms()
        await asyncio.sleep(self.calls.resume_grace_s)
        if live.peer_id in self.peers:
            return

        def mark() -> bool:
            with self.engine.begin() as conn:
                return call_store.leave_participant(conn, live.peer_id, now_ms(), unless_seen_after_ms=dropped_ms)
        if await asyncio.to_thread(mark):
            log.info("call %s: %s did not come back within %.0f s: left", live.consultation.public_id, live.peer_id,
                     self.calls.resume_grace_s)
            with contextlib.suppress(MqttError):
                await self._publish(live, SignalType.BYE, reason="connection lost")

    def metrics(self) -> list[Family]:
        return [
            Family.single("hq_call_participants", "gauge", "Call participants with their socket on this worker",
                          len(self.peers)),
            Family.single("hq_call_signals_relayed_total", "counter", "Gateway call signals relayed to browsers",
                          self.signals_relayed),
            Family.single("hq_call_quality_samples_total", "counter", "Call-quality samples stored by this worker",
                          self.samples_stored),
        ]

    # ---- background ------------------------------------------------------------------------
    async def run(self) -> None:
        """Deletes quality samples past their retention, hourly."""
        def sweep(cutoff_ms: int) -> int:
            with self.engine.begin() as conn:
                return call_store.delete_samples_before(conn, cutoff_ms)

        while True:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                deleted = await asyncio.to_thread(sweep, now_ms() - self.calls.quality_retention_days * 86_400_000)
                if deleted:
                    log.info("deleted %d call-quality samples older than %d days", deleted,
                             self.calls.quality_retention_days)
            await asyncio.sleep(RETENTION_SWEEP_S)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class CallRefused(Exception):
    """What a participant asked for cannot be done; the message goes back to their browser."""


async def _send(ws: web.WebSocketResponse, doc: dict[str, Any]) -> None:
    if ws.closed:
        return
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(json.dumps(doc, separators=(",", ":")))


# ---- JSON shapes -----------------------------------------------------------------------------
def quality_json(quality: wire.CallQuality) -> dict[str, Any]:
    doc = json.loads(wire.encode_call_quality(quality))
    doc.pop("v", None)
    doc["time"] = iso_from_ms(quality.time_ms)
    return dict(doc)


def alert_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "peer": row["peer_id"], "stream": row["stream"], "kind": row["kind"],
            "value": row["value"], "threshold": row["threshold"], "started": iso_from_ms(row["started_ms"]),
            "ended": iso_from_ms(row["ended_ms"])}


def sample_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"peer": row["peer_id"], "stream": row["stream"], "kind": row["kind"], "dir": row["direction"],
            "time": iso_from_ms(row["at_ms"]),
            **{k: row[k] for k in ("rtt_ms", "loss_pct", "jitter_ms", "fps", "kbps", "tier")}}


def participant_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"peer": row["peer_id"], "name": row["name"], "role": row["role"], "joined": iso_from_ms(row["joined_ms"]),
            "left": iso_from_ms(row["left_ms"])}


def open_alerts_family(engine: sa.Engine) -> Family:
    """Open call-quality alerts per gateway, for /metrics (and so for the fleet's alerting)."""
    with engine.connect() as conn:
        counts = call_store.open_alert_counts(conn)
    return Family("hq_call_alerts_open", "gauge", "Open call-quality alerts, per gateway",
                  {(("gateway", gw),): n for gw, n in counts.items()})


def call_summary(engine: sa.Engine, public_id: str) -> dict[str, Any] | None:
    """The call as the console and the API show it: participants, the latest figures, the alerts."""
    with engine.connect() as conn:
        consultation = call_store.find_consultation(conn, public_id)
        if consultation is None:
            return None
        return {"consultation": public_id, "gateway_id": consultation.gateway_id,
                "gateway_online": consultation.gateway_online,
                "participants": [participant_json(r) for r in call_store.participants(conn, public_id)],
                "quality": [sample_json(r) for r in call_store.latest_samples(conn, public_id)],
                "alerts": [alert_json(r) for r in call_store.alerts(conn, public_id)]}



# ---- routes ----------------------------------------------------------------------------------
routes = web.RouteTableDef()


def _public_id(request: web.Request) -> str:
    public_id = request.match_info["public_id"]
    if not wire.valid_id(public_id):
        raise web.HTTPNotFound(text=f"there is no consultation {public_id!r}")
    return public_id


@routes.get("/consultations/{public_id}/call")
async def call_page(request: web.Request) -> web.Response:
    public_id = _public_id(request)
    await caller_of(request, public_id)
    actor = await current_actor(request)
    summary = await asyncio.to_thread(call_summary, request.app[ENGINE], public_id)
    if summary is None:
        raise web.HTTPNotFound(text=f"there is no consultation {public_id!r}")
    found = await asyncio.to_thread(_recordings_of, request.app[ENGINE], public_id)
    slots = [str(s) for s in participant_slots(request.app[CONFIG].calls)]
    return html.response(call_page_html(public_id, summary, found, slots, actor=actor))


def _recordings_of(engine: sa.Engine, public_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return recordings_for(conn, public_id)


@routes.get("/consultations/{public_id}/call/ws")
async def call_socket(request: web.Request) -> web.WebSocketResponse:
    return await request.app[CALLS].serve(request, _public_id(request))


@routes.get("/api/v1/consultations/{public_id}/call")
async def get_call(request: web.Request) -> web.Response:
    public_id = _public_id(request)
    await caller_of(request, public_id)
    summary = await asyncio.to_thread(call_summary, request.app[ENGINE], public_id)
    if summary is None:
        return web.json_response({"error": f"there is no consultation {public_id!r}"}, status=404)
    return web.json_response(summary)


_FIGURES = {k: {"type": ["number", "null"]} for k in ("rtt_ms", "loss_pct", "jitter_ms", "fps", "kbps")}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/consultations/{public_id}/call": {"get": {
        "summary": "A consultation's call: participants, the latest quality figures per stream, its alerts",
        "description": "Coordinators, admins and the experts the consultation is assigned to. Live updates come "
                       "over the call page's WebSocket (/consultations/{public_id}/call/ws).",
        "parameters": [openapi.path_param("public_id", "The consultation's public id")],
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "consultation": {"type": "string"}, "gateway_id": {"type": ["string", "null"]},
            "gateway_online": {"type": "boolean"},
            "participants": {"type": "array", "items": {"type": "object", "properties": {
                "peer": {"type": "string"}, "name": {"type": "string"}, "role": {"type": "string"},
                "joined": openapi.TIME, "left": openapi.TIME}}},
            "quality": {"type": "array", "items": {"type": "object", "properties": {
                "peer": {"type": "string"}, "stream": {"type": "string"}, "kind": {"enum": ["audio", "video"]},
                "dir": {"enum": ["in", "out"], "description": "out: gateway to participant"},
                "time": openapi.TIME, "tier": {"type": ["string", "null"]}, **_FIGURES}}},
            "alerts": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "peer": {"type": "string"}, "stream": {"type": "string"},
                "kind": {"enum": ["loss", "rtt", "jitter", "low_fps", "disconnected"]},
                "value": {"type": "number"}, "threshold": {"type": "number"}, "started": openapi.TIME,
                "ended": openapi.TIME}}}}}),
            "401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN,
            "404": openapi.ok(openapi.ERROR, "There is no such consultation")},
    }},
}
