"""The gateway's composition root: wires capture, outbox, uplink, media and the local API, and runs them
in one asyncio TaskGroup. The only place that builds components; none of them builds another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from zoneinfo import ZoneInfo

from gateway import appointments, wire
from gateway.capture import DeviceHealth, DeviceSession, SerialSource, TcpSource, clock_ms, make_decoder
from gateway.certificate_watch import CertificateWatch
from gateway.checkin_form import RESULT_NOTICE
from gateway.config import GatewayConfig
from gateway.consultations import ClinicConsultations
from gateway.inbox import Inbox
from gateway.latest_readings import LatestReadings
from gateway.local_api import LocalApi
from gateway.local_ui.checkin import CheckinDesk
from gateway.media import local_pages
from gateway.media.service import MediaService
from gateway.mqttlink import Message, MqttLink, Will
from gateway.outbox import Outbox
from gateway.remote_config import NOTICE_KIND, Loaded, RemoteConfig
from gateway.replication import ReplicationMode, Replicator
from gateway.sdnotify import Health, Notifier, feed_watchdog, tasks_ended, watchdog_interval_s
from gateway.uplink import Uplink

log = logging.getLogger(__name__)


def software_version() -> str:
    try:
        return version("clinic-edge")
    except PackageNotFoundError:
        return "dev"


@dataclass
class Gateway:
    config: GatewayConfig
    outbox: Outbox
    link: MqttLink
    uplink: Uplink
    inbox: Inbox
    readings: LatestReadings
    consultations: ClinicConsultations
    devices: dict[str, DeviceHealth] = field(default_factory=dict)
    serial_sources: list[SerialSource] = field(default_factory=list)
    tcp_sources: list[TcpSource] = field(default_factory=list)
    started_ms: int = field(default_factory=clock_ms)
    local_api: LocalApi | None = None
    replicator: Replicator | None = None  # Litestream, when [replication] is enabled in 'child' mode
    media: MediaService | None = None  # cameras and calls, when [media] is enabled
    certificate: CertificateWatch | None = None  # the gateway's own TLS certificate, when [mqtt] has one
    remote: RemoteConfig | None = None  # HQ-managed settings (None: a gateway run without them, e.g. in a test)
    checkin: CheckinDesk | None = None  # patient check-in and device links (local screen)

    @property
    def config_version(self) -> int:
        return self.remote.version if self.remote is not None else 0

    def apply_settings(self, config: GatewayConfig) -> None:
        """Put a new configuration's HQ-managed settings into effect while running (see gateway.managed_settings)."""
        self.config = config
        self.uplink.heartbeat_s = config.status.heartbeat_s
        self.uplink.live_window_s = config.outbox.live_window_s
        silent_after = {d.device_id: d.silent_after_s for d in config.serial}
        for source in self.serial_sources:
            source.silent_after_s = silent_after.get(source.session.health.device_id, source.silent_after_s)
        self.uplink.status_changed()  # HQ learns the new version now, not at the next heartbeat

    async def status(self, state: wire.GatewayState = wire.GatewayState.ONLINE) -> wire.Status:
        backlog = await self.outbox.backlog() if state is wire.GatewayState.ONLINE else {}
        return wire.Status(
            state=state,
            clinic_id=self.config.gateway.clinic_id,
            time_ms=clock_ms(),
            software=software_version(),
            started_ms=self.started_ms,
            backlog=backlog,
            devices=[
                wire.DeviceStatus(h.device_id, h.protocol, h.source, h.state, h.last_byte_ms)
                for h in self.devices.values()
            ],
            drain_rate_per_s=self.uplink.drain_rate_per_s() if state is wire.GatewayState.ONLINE else None,
            config_version=self.config_version,
        )


def build(config: GatewayConfig, loaded: Loaded | None = None) -> Gateway:
    """`loaded`: how the configuration was loaded (`gateway.remote_config.load`); with it, the gateway takes
    HQ-managed settings from HQ."""
    g = config.gateway
    outbox = Outbox(config.outbox_path, g.id, quota_bytes=config.outbox.quota_bytes,
                    retain_sent_ms=int(config.outbox.retain_sent_h * 3600 * 1000))
    offline = wire.Status(wire.GatewayState.OFFLINE, g.clinic_id, 0, software_version())
    link = MqttLink(config.mqtt.link_settings(g.id), will=Will(wire.status_topic(g.id), wire.encode_status(offline)))
    uplink = Uplink(
        outbox, link, gateway_id=g.id, clinic_id=g.clinic_id,
        batch_max_records=config.outbox.batch_max_records,
        max_inflight_batches=config.outbox.max_inflight_batches,
        ack_timeout_s=config.outbox.ack_timeout_s, heartbeat_s=config.status.heartbeat_s,
        live_window_s=config.outbox.live_window_s, retain_sent_s=config.outbox.retain_sent_h * 3600,
    )
    inbox = Inbox(outbox, g.id)
    readings = LatestReadings()
    consultations = ClinicConsultations(outbox, readings, lambda: link.is_connected)
    consultations.register(inbox)
    appointments.register(inbox)
    gw = Gateway(config, outbox, link, uplink, inbox, readings, consultations)
    gw.checkin = CheckinDesk(outbox, gw.devices)
    inbox.register(RESULT_NOTICE, gw.checkin.on_result)
    store = readings.recording(outbox.append)  # the staff screen attaches current vitals to an emergency
    if loaded is not None:
        gw.remote = RemoteConfig(loaded, gw.apply_settings)
        inbox.register(NOTICE_KIND, gw.remote.handle)
    uplink.set_status_source(gw.status)
    notices = wire.notice_topic(g.id)
    subscriptions = [*uplink.subscriptions, *inbox.subscriptions]
    receivers: list[Callable[[Message], None]] = []
    if config.media.enabled:
        gw.media = MediaService(config, link, store=outbox.append, devices=gw.devices,
                                on_device_change=uplink.status_changed,
                                outbox_busy=lambda: any(outbox.count(lane) for lane in wire.Lane
                                                        if lane < wire.Lane.BULK))
        subscriptions += gw.media.subscriptions
        receivers.append(gw.media.on_message)

    def on_message(message: Message) -> None:
        (inbox if message.topic == notices else uplink).on_message(message)
        for receive in receivers:  # each looks only at its own topics
            receive(message)

    link.set_handlers(subscriptions=subscriptions, on_message=on_message,
                      on_connect=uplink.on_connect, on_disconnect=uplink.on_disconnect)

    def on_state(_health: DeviceHealth) -> None:
        uplink.status_changed()

    default_tz = ZoneInfo(g.timezone)
    for dev in config.serial:
        tz = ZoneInfo(dev.timezone) if dev.timezone else default_tz
        health = DeviceHealth(dev.device_id, str(dev.protocol), dev.port)
        gw.devices[dev.device_id] = health
        decoder = make_decoder(dev.protocol, dev.device_id, tz, acks=dev.send_acks)
        session = DeviceSession(health, decoder, store, on_state, dev.patient_id,
                                linked_patient=gw.checkin.linked_patient)
        gw.serial_sources.append(SerialSource(dev.port, dev.baudrate, session,
                                              silent_after_s=dev.silent_after_s, send_replies=dev.send_acks))
    for listener in config.tcp:
        tz = ZoneInfo(listener.timezone) if listener.timezone else default_tz
        gw.tcp_sources.append(TcpSource(listener.host, listener.port, listener.device_id, listener.protocol, tz,
                                        store, on_state, gw.devices, gw.checkin.linked_patient))
    if config.http.port:
        gw.local_api = LocalApi(gw, config.http.host, config.http.port)
        if gw.media is not None:
            local_pages.register(gw.local_api.app, gw.media)
    if config.replication.enabled and config.replication.mode is ReplicationMode.CHILD:
        gw.replicator = Replicator(config.outbox_path, config.replication)
    if config.mqtt.cert_file is not None:
        gw.certificate = CertificateWatch(config.mqtt.cert_file, config.enrolment.renew_warning_days)
    return gw


def _health(gw: Gateway, tasks: dict[str, asyncio.Task[None]]) -> Health:
    """The watchdog's verdict: capture and uplink alive. Not the broker: offline is normal operation,
    and a restart would not bring HQ back."""
    ended = tasks_ended(tasks)
    if ended:
        return Health(False, f"{', '.join(ended)} stopped")
    if gw.link.is_connected:
        return Health(True, "connected to the broker")
    return Health(True, "offline: HQ's broker unreachable, readings are buffered in the outbox")


async def run(config: GatewayConfig, stop: asyncio.Event | None = None, notifier: Notifier | None = None,
              loaded: Loaded | None = None) -> None:
    """Run the gateway until `stop` is set (or the task is cancelled); shuts down cleanly.

    Under systemd (`notifier`), READY is sent once the outbox is open, the capture and uplink tasks run
    and the MLLP listeners are bound; the watchdog is fed only while those tasks are alive. `loaded`: how the
    configuration was loaded; with it the gateway takes HQ-managed settings from HQ.
    """
    gw = build(config, loaded)
    if loaded is not None and loaded.problem is not None:
        log.warning("HQ-managed settings not used, running on the TOML file alone (HQ sees version 0): %s",
                    loaded.problem)
    elif loaded is not None and loaded.managed is not None:
        log.info("HQ-managed settings v%d in effect", loaded.managed.version)
    notifier = notifier or Notifier(None)
    await gw.outbox.open()
    await gw.consultations.open()
    if gw.checkin is not None:
        await gw.checkin.open()  # before capture: a device linked before a restart stays linked
    log.info("gateway %s (clinic %s) started; outbox %s holds %d entries, next seq %d",
             config.gateway.id, config.gateway.clinic_id, config.outbox_path, gw.outbox.count(),
             gw.outbox.next_seq)
    if gw.certificate is not None and (warning := gw.certificate.warning()) is not None:
        log.warning("%s", warning)
    stop = stop or asyncio.Event()
    try:
        if gw.replicator is not None:
            gw.replicator.start()  # the outbox is open and in WAL mode, as Litestream needs
        async with asyncio.TaskGroup() as tg:
            tasks = {"mqtt link": tg.create_task(gw.link.run()), "uplink": tg.create_task(gw.uplink.run())}
            tasks |= {f"serial {s.path}": tg.create_task(s.run()) for s in gw.serial_sources}
            tasks |= {f"tcp listener :{s.port}": tg.create_task(s.run()) for s in gw.tcp_sources}
            if gw.media is not None:
                tasks["media"] = tg.create_task(gw.media.run())
            if gw.local_api is not None:
                await gw.local_api.start()
            for source in gw.tcp_sources:
                await source.listening.wait()  # a port that cannot be bound fails the task group instead
            notifier.ready(f"outbox holds {gw.outbox.count()} entries; {len(gw.serial_sources)} serial ports, "
                           f"{len(gw.tcp_sources)} MLLP listeners")
            interval = watchdog_interval_s()
            feeder = None
            if interval is not None and notifier.enabled:
                feeder = tg.create_task(feed_watchdog(notifier, interval, lambda: _health(gw, tasks)))
            await stop.wait()
            log.info("gateway %s stopping", config.gateway.id)
            notifier.stopping("publishing the offline status, closing the outbox")
            if feeder is not None:
                feeder.cancel()  # the link ends on purpose now: no watchdog verdict on that
            if gw.media is not None:
                await gw.media.close()  # ends the calls while HQ can still be told
            offline = wire.encode_status(await gw.status(wire.GatewayState.OFFLINE))
            await gw.link.close(final=[(wire.status_topic(config.gateway.id), offline, True)])
            for t in tasks.values():
                t.cancel()
    finally:
        if gw.local_api is not None:
            with contextlib.suppress(Exception):
                await gw.local_api.stop()
        try:
            await gw.outbox.close()
        finally:
            if gw.replicator is not None:
                await gw.replicator.stop()  # after the outbox's last commit, so Litestream ships it
