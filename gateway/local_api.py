"""The gateway's local HTTP API on the clinic LAN: health (/healthz), Prometheus metrics (/metrics), a JSON
status (/api/v1/status) and the notices from HQ, with the clinic staff's screen (`gateway.local_ui`) mounted
beside them.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.local_ui import screen
from gateway.prometheus import Family, render

if TYPE_CHECKING:
    from gateway.app import Gateway


class LocalApi:
    def __init__(self, gateway: Gateway, host: str, port: int) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/api/v1/status", self.status)
        app.router.add_get("/api/v1/notices", self.notices)
        screen.install(app, gateway)
        self.app = app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        problems = []
        if not self.gateway.link.is_connected:
            problems.append("not connected to the MQTT broker (data is buffered in the outbox)")
        problems += [f"device {h.device_id} is {h.state}" for h in self.gateway.devices.values()
                     if h.state in ("silent", "disconnected")]
        replicator = self.gateway.replicator
        if replicator is not None and not replicator.running:
            problems.append("replication (litestream) is not running: the outbox has no fresh off-box copy")
        if self.gateway.certificate is not None and (warning := self.gateway.certificate.warning()) is not None:
            problems.append(warning)
        body = {"status": "ok" if not problems else "degraded", "problems": problems}
        # Buffering while HQ is away is normal operation: only a dead outbox would be a 503.
        return web.json_response(body, status=200)

    async def status(self, request: web.Request) -> web.Response:
        status = await self.gateway.status()
        return web.Response(body=json.dumps({
            "gateway_id": self.gateway.config.gateway.id,
            "clinic_id": status.clinic_id,
            "connected": self.gateway.link.is_connected,
            "backlog": {lane.name.lower(): {"count": b.count, "oldest_ms": b.oldest_ms}
                        for lane, b in status.backlog.items()},
            "devices": [
                {"device_id": d.device_id, "protocol": d.protocol, "source": d.source, "state": d.state,
                 "last_ms": d.last_ms} for d in status.devices],
            "drain_rate_per_s": self.gateway.uplink.drain_rate_per_s(),
            "outbox": {"appended_total": self.gateway.outbox.appended_total,
                       "dropped_total": self.gateway.outbox.dropped_total,
                       "removed_total": self.gateway.outbox.removed_total,
                       "retained": self.gateway.outbox.retained,
                       "expired_total": self.gateway.outbox.expired_total,
                       "replayed_total": self.gateway.outbox.replayed_total,
                       "demoted_total": self.gateway.outbox.demoted_total,
                       "next_seq": self.gateway.outbox.next_seq},
            # In 'external' mode another process replicates: this one can only say so.
            "replication": {"enabled": self.gateway.config.replication.enabled,
                            "mode": str(self.gateway.config.replication.mode)} if self.gateway.replicator is None
                           else {"enabled": True, "mode": "child", **self.gateway.replicator.state()},
            "certificate": self._certificate_json(),
            "config": self._config_json(),
            "uplink": {"batches_sent": self.gateway.uplink.stats.batches_sent,
                       "records_sent": self.gateway.uplink.stats.records_sent,
                       "records_acked": self.gateway.uplink.stats.records_acked},
        }), content_type="application/json")

    def _config_json(self) -> dict[str, object]:
        remote = self.gateway.remote
        current = remote.current if remote is not None else None
        return {"version": self.gateway.config_version, "managed_by_hq": remote is not None,
                "applied_ms": current.applied_ms if current else None,
                "settings": current.settings.to_json() if current else {}}

    def _certificate_json(self) -> dict[str, object] | None:
        watch = self.gateway.certificate
        if watch is None:
            return None
        state = watch.state()
        return {"file": str(state.path), "subject": state.subject, "serial": state.serial,
                "not_after_ms": int(state.not_after.timestamp() * 1000) if state.not_after else None,
                "error": state.error, "warning": watch.warning()}

    async def notices(self, request: web.Request) -> web.Response:
        """What HQ sent this clinic (confirmations, reminders, consultation updates, ...), newest first."""
        kinds = tuple(k for k in request.query.get("kind", "").split(",") if k) or None
        stored = await self.gateway.inbox.recent(limit=100, kinds=kinds)
        return web.json_response({"notices": [
            {"id": n.id, "kind": n.kind, "body": n.body, "hq_ms": n.hq_ms, "received_ms": n.received_ms,
             "outcome": n.outcome, "detail": n.detail} for n in stored]})

    async def metrics(self, request: web.Request) -> web.Response:
        gw = self.gateway
        backlog = await gw.outbox.backlog()
        now_ms = time.time_ns() // 1_000_000
        s = gw.uplink.stats
        devices = gw.devices.values()
        metrics = [
            Family("gateway_outbox_depth", "gauge", "Entries waiting for HQ to commit them, per lane.",
                   {(("lane", lane.name.lower()),): b.count for lane, b in backlog.items()}),
            Family("gateway_outbox_oldest_age_seconds", "gauge", "Age of the oldest waiting entry, per lane.",
                   {(("lane", lane.name.lower()),): (now_ms - b.oldest_ms) / 1000 if b.oldest_ms else 0
                    for lane, b in backlog.items()}),
            Family.single("gateway_outbox_appended_total", "counter", "Entries committed to the outbox.",
                          gw.outbox.appended_total),
            Family.single("gateway_outbox_commits_total", "counter", "Outbox transactions (fsyncs).",
                          gw.outbox.commits_total),
            Family.single("gateway_outbox_dropped_total", "counter",
                          "Entries the disk quota forced out (each recorded as a gap at HQ).", gw.outbox.dropped_total),
            Family.single("gateway_outbox_retained", "gauge",
                          "Entries HQ confirmed, kept for a replay after an HQ restore.", gw.outbox.retained),
            Family.single("gateway_outbox_replayed_total", "counter",
                          "Confirmed entries sent again at HQ's request.", gw.outbox.replayed_total),
            Family.single("gateway_outbox_demoted_total", "counter",
                          "Live vitals moved to the backlog lane after outliving the live window.",
                          gw.outbox.demoted_total),
            Family.single("gateway_uplink_batches_sent_total", "counter", "Batches published.", s.batches_sent),
            Family.single("gateway_uplink_records_sent_total", "counter", "Records published (incl. resends).",
                          s.records_sent),
            Family.single("gateway_uplink_records_acked_total", "counter", "Records HQ confirmed committed.",
                          s.records_acked),
            Family.single("gateway_uplink_ack_timeouts_total", "counter", "Lanes resent after no ack.",
                          s.ack_timeouts),
            Family.single("gateway_uplink_drain_rate", "gauge", "Records confirmed per second (30 s window).",
                          gw.uplink.drain_rate_per_s()),
            Family.single("gateway_inbox_received_total", "counter", "Notices from HQ stored (each once).",
                          gw.inbox.received_total),
            Family.single("gateway_inbox_rejected_total", "counter", "Notices from HQ the gateway could not apply.",
                          gw.inbox.rejected_total),
            Family.single("gateway_emergencies_total", "counter", "Emergencies requested on the staff screen.",
                          gw.consultations.emergencies_total),
            Family.single("gateway_mqtt_connected", "gauge", "1 when connected to the broker.",
                          1 if gw.link.is_connected else 0),
            Family.single("gateway_mqtt_reconnects_total", "counter", "Broker connections made.",
                          gw.link.connects),
            Family("gateway_device_up", "gauge", "1 when the device sends data.",
                   {(("device", d.device_id),): 1 if d.state == "ok" else 0 for d in devices}),
            Family("gateway_device_records_total", "counter", "Records decoded per device.",
                   {(("device", d.device_id),): d.records_total for d in devices}),
            Family("gateway_device_rejected_frames_total", "counter", "Frames rejected per device.",
                   {(("device", d.device_id),): d.errors_total for d in devices}),
        ]
        if gw.replicator is not None:
            metrics += [
                Family.single("gateway_replication_up", "gauge", "1 when litestream replicates the outbox.",
                              1 if gw.replicator.running else 0),
                Family.single("gateway_replication_restarts_total", "counter",
                              "Times litestream exited and was started again.", gw.replicator.restarts),
                Family.single("gateway_replication_errors_total", "counter",
                              "Errors litestream logged (e.g. the replica unreachable; it retries).",
                              gw.replicator.errors_total),
            ]
        metrics.append(Family.single("gateway_config_version", "gauge",
                                     "Version of the HQ-managed settings in effect (0: the TOML file alone).",
                                     gw.config_version))
        if gw.certificate is not None:
            state = gw.certificate.state()
            if state.not_after is not None:
                metrics.append(Family.single(
                    "gateway_certificate_expiry_timestamp_seconds", "gauge",
                    "When the gateway's TLS certificate expires (Unix time).", state.not_after.timestamp()))
            metrics.append(Family.single(
                "gateway_certificate_renewal_due", "gauge",
                "1 when the certificate expires within enrolment.renew_warning_days (or is unreadable).",
                1 if gw.certificate.warning() is not None else 0))
        if gw.media is not None:
            metrics += gw.media.metrics()
        return web.Response(text=render(metrics), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})
