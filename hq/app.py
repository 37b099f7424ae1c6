"""The HQ composition root: `create_app(config)` wires the engine, MQTT link, ingest, call relay, recordings,
live hub and routes.

Background work (the MQTT link, the ingest writer, the offline sweeper, Litestream) runs in `cleanup_ctx` tasks,
so it starts and stops with the aiohttp application. `hq.__main__` runs the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from aiohttp import WSCloseCode, web

from gateway.mqttlink import Message, MqttLink
from gateway.replication import ReplicationError, ReplicationMode, Replicator
from hq import (
    api,
    auth,
    ca,
    calls,
    checkin_events,
    db,
    directory_upkeep,
    fleet_admin_api,
    gateway_settings,
    observability,
    observation_rollup,
    openapi,
    presence,
    recordings,
    reminders,
    replay,
    revocation,
)
from hq.appkeys import (
    CA_FILES,
    CALLS,
    CONFIG,
    DOWNLINK,
    ENFORCER,
    ENGINE,
    EVENTS,
    FATAL,
    HUB,
    INGEST,
    LINK,
    LIVE_BUS,
    OPENAPI_PATHS,
    RECEIPTS,
    RECORDINGS,
    SOCKETS,
)
from hq.broker_control import DynsecControl, RevocationEnforcer
from hq.config import HqConfig
from hq.console import (
    admin,
    consultations,
    gateway_admin,
    pages,
    patient_imaging,
    patient_merges,
    patients,
    schedule,
    websocket,
)
from hq.console import departments as department_pages
from hq.console import experts as expert_pages
from hq.console import metrics as metrics_pages
from hq.consultation_events import ConsultationEvents
from hq.downlink import Downlink, Receipts
from hq.escalation import Escalator
from hq.fhir import observation as fhir_observation
from hq.fhir import patient as fhir_patient
from hq.fhir import practitioner
from hq.fhir import scheduling as fhir_scheduling
from hq.gateway_events import GatewayEvents
from hq.ingest import Ingest
from hq.live import LiveHub
from hq.live_bus import LiveBus

log = logging.getLogger(__name__)

REVOKED_REFRESH_S = 10.0
CRL_CHECK_INTERVAL_S = 3600.0


class StartupError(Exception):
    """HQ cannot start (e.g. its database is unreachable); the message is for the operator."""


def create_app(config: HqConfig) -> web.Application:
    app = web.Application(middlewares=[api.api_errors])
    app[CONFIG] = config
    app[HUB] = LiveHub(config.console.ws_queue_max)
    app[SOCKETS] = weakref.WeakSet()
    app[EVENTS] = GatewayEvents()
    app[RECEIPTS] = Receipts()
    app[RECEIPTS].register(app[EVENTS])
    ConsultationEvents(config.consultations).register(app[EVENTS], app[RECEIPTS])
    app[RECEIPTS].on_receipt(gateway_settings.NOTICE_KIND, gateway_settings.on_receipt)
    app[CA_FILES] = ca.CaFiles(config.ca.dir, config.ca.crl_path)
    checkin_events.register(app[EVENTS])
    app.add_routes(auth.routes)
    app.add_routes(admin.routes)
    app.add_routes(expert_pages.routes)
    app.add_routes(department_pages.routes)
    app.add_routes(metrics_pages.routes)
    app.add_routes(practitioner.routes)
    app.add_routes(api.routes)
    app.add_routes(consultations.routes)
    app.add_routes(fleet_admin_api.routes)
    app.add_routes(gateway_admin.routes)
    app.add_routes(patients.routes)
    app.add_routes(patient_imaging.routes)
    app.add_routes(patient_merges.routes)
    app.add_routes(fhir_patient.routes)
    app.add_routes(fhir_observation.routes)
    app.add_routes(schedule.routes)
    app.add_routes(fhir_scheduling.routes)
    app.add_routes(calls.routes)
    app.add_routes(recordings.routes)
    app[EVENTS].register(recordings.RECORDING_EVENT, recordings.recording_event)
    app[OPENAPI_PATHS] = {**openapi.FLEET_PATHS, **auth.OPENAPI_PATHS, **admin.OPENAPI_PATHS,
                          **consultations.OPENAPI_PATHS, **fleet_admin_api.OPENAPI_PATHS, **patients.OPENAPI_PATHS,
                          **patient_imaging.OPENAPI_PATHS, **patient_merges.OPENAPI_PATHS, **fhir_patient.OPENAPI_PATHS,
                          **fhir_observation.OPENAPI_PATHS, **schedule.OPENAPI_PATHS, **fhir_scheduling.OPENAPI_PATHS,
                          **expert_pages.OPENAPI_PATHS, **department_pages.OPENAPI_PATHS,
                          **metrics_pages.OPENAPI_PATHS, **practitioner.OPENAPI_PATHS,
                          **calls.OPENAPI_PATHS, **recordings.OPENAPI_PATHS}
    app.add_routes(observability.routes)
    app.add_routes(pages.routes)
    app.add_routes(websocket.routes)
    app.router.add_static("/static/", pages.STATIC_DIR, name="static")
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(directory_upkeep.directory_upkeep)
    app.cleanup_ctx.append(_replication)  # stops after ingest, so Litestream ships its last commits
    app.cleanup_ctx.append(_ingest)
    app.cleanup_ctx.append(_escalation)
    app.cleanup_ctx.append(observation_rollup.background)
    app.cleanup_ctx.append(presence.background)
    reminders.register(app)
    app.on_shutdown.append(_close_websockets)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    d = app[CONFIG].database
    engine = db.create_engine_for(db.database_url(d.url, d.password_file), pool_size=d.pool_size,
                                  max_overflow=d.max_overflow)
    try:
        await asyncio.to_thread(db.create_schema, engine)
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise StartupError(f"cannot open database {where}: {getattr(exc, 'orig', None) or exc}") from exc
    app[ENGINE] = engine
    log.info("database ready: %s", engine.url.render_as_string(hide_password=True))
    yield
    engine.dispose()


async def _replication(app: web.Application) -> AsyncIterator[None]:
    section, url = app[CONFIG].replication, app[ENGINE].url
    replicator: Replicator | None = None
    if not section.enabled:
        log.info("database replication is off ([replication] enabled = false)")
    elif section.mode is ReplicationMode.EXTERNAL and url.get_backend_name() == "sqlite":
        log.info("database replication runs in its own process ([replication] mode = \"external\": "
                 "clinic-hq replicate, the clinic-hq-litestream unit)")
    elif url.get_backend_name() != "sqlite":
        log.info("database is %s: replication and backups are the database's job (e.g. streaming replication "
                 "and base backups), not Litestream's; [replication] is ignored", url.get_backend_name())
    elif not url.database or url.database == ":memory:":
        log.warning("in-memory SQLite database: nothing to replicate")
    else:
        try:
            replicator = Replicator(Path(url.database), section)
            replicator.start()
        except ReplicationError as exc:
            raise StartupError(f"cannot replicate the database: {exc}") from exc
        app[observability.REPLICATOR] = replicator
    yield
    if replicator is not None:
        await replicator.stop()


async def _ingest(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    link = MqttLink(config.mqtt.link_settings(config.mqtt.client_id))
    downlink = Downlink(app[ENGINE], link)
    ingest = Ingest(app[ENGINE], link, app[HUB], config.ingest, events=app[EVENTS], on_gateway_online=downlink.wake)
    ingest.refused_gateways.update(await asyncio.to_thread(revocation.all_revoked, app[ENGINE]))
    relay = calls.CallRelay(app[ENGINE], link, config.calls)
    store = recordings.RecordingStore(app[ENGINE], link, config.recordings)
    subscriptions = [*ingest.subscriptions, *relay.subscriptions, *store.subscriptions]
    bus = LiveBus(app[HUB], link, config.mqtt.client_id) if config.console.share_live else None
    if bus is not None:
        subscriptions += bus.subscriptions
        app[LIVE_BUS] = bus

    def receive(message: Message) -> None:
        if bus is not None and bus.on_message(message):
            return
        for handle in (ingest.on_message, relay.on_message, store.on_message):  # each takes its own topics
            handle(message)

    on_message = receive
    on_connect = None
    enforcer: RevocationEnforcer | None = None
    if config.mqtt.dynamic_security:
        control = DynsecControl(link)
        enforcer = app[ENFORCER] = RevocationEnforcer(app[ENGINE], control)
        subscriptions += control.subscriptions
        on_connect = enforcer.on_connect

        def on_message(message: Message) -> None:
            if not control.on_message(message):
                receive(message)

    link.set_handlers(subscriptions=subscriptions, on_message=on_message, on_connect=on_connect)
    app[LINK] = link
    app[INGEST] = ingest
    app[DOWNLINK] = downlink
    app[CALLS] = relay
    app[RECORDINGS] = store
    tasks = [asyncio.create_task(link.run(), name="hq-mqtt"), asyncio.create_task(ingest.run(), name="hq-ingest"),
             asyncio.create_task(downlink.run(), name="hq-downlink")]
    if enforcer is not None:
        tasks.append(asyncio.create_task(enforcer.run(), name="hq-revocations"))
    fatal: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    app[FATAL] = fatal
    crash_report = functools.partial(_report_crash, fatal)
    for task in tasks:
        task.add_done_callback(crash_report)
    tasks.append(asyncio.create_task(_request_replays(app[ENGINE], link), name="hq-replay"))
    tasks.append(asyncio.create_task(_keep_revocations(app), name="hq-crl"))
    tasks.append(asyncio.create_task(relay.run(), name="hq-calls"))
    if bus is not None:
        tasks.append(asyncio.create_task(bus.run(), name="hq-live-bus"))
    yield
    app[HUB].forward = None
    for task in tasks:
        task.remove_done_callback(crash_report)  # they end now because HQ stops, not because they crashed
    await relay.close()
    await store.close()
    await link.close()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _escalation(app: web.Application) -> AsyncIterator[None]:
    """Dispatch rounds that time out escalate, overdue short forms are flagged (state in the database)."""
    escalator = Escalator(app[ENGINE], app[CONFIG].consultations, app)
    task = asyncio.create_task(escalator.run(), name="hq-escalation")
    task.add_done_callback(functools.partial(_report_crash, app[FATAL]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _request_replays(engine: sa.Engine, link: MqttLink) -> None:
    try:
        await replay.request_replays(engine, link)
    except sa.exc.SQLAlchemyError as exc:
        # Not fatal: the restore mark stays in the database, and the next start asks again.
        log.error("cannot ask the gateways to replay after the restore: %s", exc)


async def _keep_revocations(app: web.Application) -> None:
    """Every few seconds, the revoked gateways other HQ workers recorded; once an hour, whether the CRL needs
    writing afresh (before it expires, or if it is missing)."""
    engine, files, section = app[ENGINE], app[CA_FILES], app[CONFIG].ca
    ingest = app[INGEST]
    last_crl_check = -math.inf
    while True:
        try:
            ingest.refused_gateways.update(await asyncio.to_thread(revocation.all_revoked, engine))
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot read the revoked gateways: %s", exc)
        if time.monotonic() - last_crl_check > CRL_CHECK_INTERVAL_S:
            last_crl_check = time.monotonic()
            try:
                await asyncio.to_thread(_refresh_crl, engine, files, section.crl_days)
            except (ca.CaError, OSError, sa.exc.SQLAlchemyError) as exc:
                log.error("cannot renew the revocation list %s: %s", files.crl_path, exc)
        await asyncio.sleep(REVOKED_REFRESH_S)


def _refresh_crl(engine: sa.Engine, files: ca.CaFiles, crl_days: int) -> None:
    now = datetime.now(UTC)
    if files.exists() and revocation.crl_due(files.read_crl(), now=now, crl_days=crl_days):
        revocation.publish_crl(engine, files, files.load(), now=now, crl_days=crl_days)
        log.info("revocation list %s written", files.crl_path)


def _report_crash(fatal: asyncio.Future[str], task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    message = f"background task {task.get_name()} stopped: {exc!r}" if exc else f"{task.get_name()} ended"
    log.error("%s", message, exc_info=exc)
    if not fatal.done():
        fatal.set_result(message)


async def _close_websockets(app: web.Application) -> None:
    sockets = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
