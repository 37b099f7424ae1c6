"""/healthz and /metrics: whether HQ can do its job, and Prometheus counters of how it is doing it.

Handlers only; the exposition format is in `gateway.prometheus`, the counters live on `Ingest` and `LiveHub`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from gateway.prometheus import Family, render
from gateway.replication import Replicator
from hq import calls, db, queries
from hq.appkeys import CALLS, ENGINE, EVENTS, HUB, INGEST, LINK, LIVE_BUS, RECORDINGS
from hq.observation_rollup import ROLLUP_STATS
from hq.presence import PRESENCE_STATS
from hq.representations import gateway_json

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
# Set by hq.app only while Litestream replicates a SQLite database (a key of this module's own, as
# only these handlers read it).
REPLICATOR = web.AppKey("replicator", Replicator)
DB_CHECK_TIMEOUT_S = 3.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    reasons: list[str] = []
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
            await asyncio.to_thread(db.ping, request.app[ENGINE])
    except (sa.exc.SQLAlchemyError, TimeoutError) as exc:
        reasons.append(f"database unreachable: {type(exc).__name__}")
    if not request.app[LINK].is_connected:
        reasons.append("mqtt broker not connected")
    if not request.app[INGEST].writer_alive:
        reasons.append("ingest writer not running")
    if reasons:
        return web.json_response({"status": "unhealthy", "reasons": reasons}, status=503)
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    ingest, hub, link = request.app[INGEST], request.app[HUB], request.app[LINK]
    s = ingest.stats
    families = [
        Family.single("hq_ingest_readings_total", "counter", "Readings newly stored", s.readings),
        Family.single("hq_ingest_duplicates_total", "counter",
                      "Readings received again and ignored (already stored)", s.duplicates),
        Family.single("hq_ingest_batches_total", "counter", "Batches committed", s.batches),
        Family.single("hq_ingest_statuses_total", "counter", "Gateway status messages applied", s.statuses),
        Family.single("hq_ingest_rejected_total", "counter",
                      "Batches or statuses rejected as malformed (wire contract)", s.rejected),
        Family.single("hq_ingest_shed_total", "counter",
                      "Messages dropped because the writer queue was full (gateways resend)", s.shed),
        Family.single("hq_ingest_commit_failures_total", "counter", "Ingest transactions that failed",
                      s.commit_failures),
        Family.single("hq_ingest_transactions_total", "counter", "Ingest transactions committed", s.transactions),
        Family.single("hq_acks_sent_total", "counter", "Acks published to gateways", s.acks_sent),
        Family.single("hq_ack_failures_total", "counter", "Acks that could not be published", s.ack_failures),
        Family("hq_ingest_lag_ms", "histogram", "HQ commit time minus gateway receive time, per reading (ms)",
               histogram=s.lag_ms),
        Family.single("hq_ingest_queue_depth", "gauge", "Messages waiting for the database writer",
                      ingest.queue_depth),
        Family.single("hq_mqtt_connected", "gauge", "1 if connected to the MQTT broker", int(link.is_connected)),
        Family.single("hq_mqtt_connects_total", "counter", "MQTT connections made", link.connects),
        Family.single("hq_websocket_clients", "gauge", "Connected console WebSocket clients", hub.clients),
        Family.single("hq_live_dropped_total", "counter",
                      "Live messages dropped for slow WebSocket clients (oldest first)", hub.dropped),
    ]
    rollup = request.app.get(ROLLUP_STATS)
    if rollup is not None:
        families += [
            Family.single("hq_rollup_rows_total", "counter", "Readings summed into the patients' daily timelines",
                          rollup.rows),
            Family.single("hq_rollup_provisional_patients_total", "counter",
                          "Patient records made for device patient ids HQ did not know", rollup.provisional_patients),
            Family.single("hq_rollup_failures_total", "counter", "Rollup transactions that failed (retried)",
                          rollup.failures),
        ]
    bus = request.app.get(LIVE_BUS)
    if bus is not None:
        families += [
            Family.single("hq_live_shared_total", "counter", "Live messages passed to the other HQ workers", bus.sent),
            Family.single("hq_live_received_total", "counter", "Live messages from the other HQ workers delivered",
                          bus.received),
            Family.single("hq_live_share_dropped_total", "counter",
                          "Live messages not passed to the other workers (broker away or queue full)", bus.dropped),
            Family.single("hq_live_rejected_total", "counter", "Malformed live messages from other workers",
                          bus.rejected),
        ]
    presence = request.app.get(PRESENCE_STATS)
    if presence is not None:
        families += [
            Family.single("hq_presence_refreshed_total", "counter",
                          "Experts whose free windows (for emergency matching) were computed", presence.refreshed),
            Family.single("hq_presence_lost_races_total", "counter",
                          "Experts changed while their windows were computed (done again)", presence.lost_races),
            Family.single("hq_presence_failures_total", "counter", "Refreshes of free windows that failed (retried)",
                          presence.failures),
        ]
    events = request.app.get(EVENTS)
    if events is not None:
        families += [
            Family.single("hq_gateway_events_handled_total", "counter",
                          "Gateway events (emergencies, forms, check-ins, receipts) applied", events.handled_total),
            Family.single("hq_gateway_events_rejected_total", "counter",
                          "Gateway events rejected as malformed (kept, not applied)", events.rejected_total),
        ]
    replicator = request.app.get(REPLICATOR)
    if replicator is not None:
        families += [
            Family.single("hq_replication_up", "gauge", "1 when litestream replicates the SQLite database",
                          int(replicator.running)),
            Family.single("hq_replication_restarts_total", "counter",
                          "Times litestream exited and was started again", replicator.restarts),
            Family.single("hq_replication_errors_total", "counter",
                          "Errors litestream logged (e.g. the replica unreachable; it retries)",
                          replicator.errors_total),
        ]
    families += request.app[CALLS].metrics() + request.app[RECORDINGS].metrics()
    try:
        rows = await asyncio.to_thread(queries.list_gateways, request.app[ENGINE])
        families += gateway_families([gateway_json(r) for r in rows])
        families.append(await asyncio.to_thread(calls.open_alerts_family, request.app[ENGINE]))
    except sa.exc.SQLAlchemyError as exc:
        log.warning("metrics: reading the gateways failed: %s", exc)
    return web.Response(body=render(families).encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def gateway_families(gateways: list[dict[str, Any]]) -> list[Family]:
    """Per-gateway fleet figures, as the gateways last reported them (pure; the handler reads the rows)."""
    def per_gateway(value: Callable[[dict[str, Any]], float | None]) -> dict[tuple[tuple[str, str], ...], float]:
        return {(("gateway", g["gateway_id"]), ("clinic", g["clinic_id"])): v
                for g in gateways if (v := value(g)) is not None}

    def per_lane(field: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {(("gateway", g["gateway_id"]), ("lane", lane)): v
                for g in gateways for lane, b in g["backlog_by_lane"].items() if (v := b[field]) is not None}

    return [
        Family.single("hq_gateways_online", "gauge", "Gateways currently online",
                      sum(g["status"] == "online" for g in gateways)),
        Family("hq_gateway_online", "gauge", "1 if the gateway is online", per_gateway(
            lambda g: 1 if g["status"] == "online" else 0)),
        Family("hq_gateway_backlog", "gauge", "Entries waiting on the gateway, per lane", per_lane("count")),
        Family("hq_gateway_backlog_oldest_age_seconds", "gauge",
               "Age of the oldest waiting entry when the gateway last reported, per lane", per_lane("oldest_age_s")),
        Family("hq_gateway_drain_rate", "gauge", "Entries per second HQ confirmed, as the gateway reported",
               per_gateway(lambda g: g["drain_rate_per_s"])),
        Family("hq_gateway_drain_eta_seconds", "gauge", "Estimated seconds until the gateway's backlog is drained",
               per_gateway(lambda g: g["drain_eta_s"])),
        Family("hq_gateway_devices_down", "gauge", "Devices silent or disconnected on the gateway",
               per_gateway(lambda g: sum(d["state"] in ("silent", "disconnected") for d in g["devices"]))),
    ]
