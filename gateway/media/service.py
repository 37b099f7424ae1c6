"""The gateway's media service: its cameras, one call room per consultation, the call signalling HQ relays over
MQTT (offers in, answers out, candidates both ways), quality reports to HQ every few seconds, and the screens on
the clinic's LAN (which signal over the local API instead).

Signalling of one participant is handled in order (a candidate waits for its offer); participants are served
independently. HQ decided who may join before relaying an offer; the gateway only bounds how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

from gateway import wire
from gateway.capture import DeviceHealth, state_event
from gateway.config import CameraConfig, GatewayConfig
from gateway.media.camera import Camera, redact
from gateway.media.discovery import CameraDiscovery, FoundCamera, camera_id
from gateway.media.peer import OfferError, ice_configuration, restrict_host_addresses, tolerate_slow_links
from gateway.media.recorder import Recorder, RecorderError
from gateway.media.recordings import Manifest, RecordingFiles
from gateway.media.room import CallFull, CallRoom
from gateway.media.upload import RecordingUploader
from gateway.mqttlink import Message, MqttError, MqttLink
from gateway.outbox import Entry, OutboxError
from gateway.prometheus import Family
from gateway.wire import CallSignal, Lane, Party, SignalType, SlotRole

log = logging.getLogger(__name__)

Store = Callable[[Sequence[Entry]], Awaitable[list[int]]]
INBOX_IDLE_S = 120.0  # a participant's signalling worker ends after this long without messages
STATE_DEBOUNCE_S = 0.3
REAP_INTERVAL_S = 2.0
LOCAL_PEER_PREFIX = "lan-"
RECORDING_EVENT = "RECORDING"  # the bulk-lane event announcing a finished recording (hq.recordings handles it)


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MediaService:
    def __init__(self, config: GatewayConfig, link: MqttLink, *, store: Store,
                 devices: dict[str, DeviceHealth], on_device_change: Callable[[], None],
                 outbox_busy: Callable[[], bool] = lambda: False) -> None:
        self.config = config
        self.media = config.media
        self.gateway_id = config.gateway.id
        self.link = link
        self.store = store
        self.devices = devices
        self.on_device_change = on_device_change
        self.cameras: list[Camera] = []  # shared with every room: a camera found later shows up in them too
        self.rooms: dict[str, CallRoom] = {}
        self.quality_sent = 0
        self._inboxes: dict[tuple[str, str], asyncio.Queue[CallSignal]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._room_tasks: dict[str, asyncio.Task[None]] = {}
        self._state_due: set[str] = set()
        self._camera_group: asyncio.TaskGroup | None = None
        self._recorders: dict[str, Recorder] = {}
        self.files = RecordingFiles(config.recordings_dir, self.media.recordings_quota_bytes)
        self.outbox_busy = outbox_busy
        self.uploader = RecordingUploader(self.files, link, self.gateway_id, chunk_bytes=self.media.upload_chunk_bytes,
                                          kbps=self.media.upload_kbps, may_send=self._may_upload)
        wants_mdns = self.media.discover_cameras or any(c.mdns_name for c in config.camera)
        self.discovery = CameraDiscovery(self.media.discovery_interfaces, on_found=self._found) if wants_mdns else None
        for camera_config in config.camera:
            self.add_camera(Camera(camera_config, self.media, self.camera_health(camera_config), self._camera_state,
                                   resolve=self._resolver(camera_config)))
        if self.media.ice_host_addresses:
            restrict_host_addresses(self.media.ice_host_addresses)
        tolerate_slow_links()

    # ---- cameras ---------------------------------------------------------------------------
    def camera_health(self, camera: CameraConfig) -> DeviceHealth:
        """A camera's entry among the gateway's devices (its state goes to HQ with theirs)."""
        source = redact(camera.url) if camera.url else f"mdns:{camera.mdns_name}"
        health = DeviceHealth(camera.id, str(camera.kind), source)
        self.devices[camera.id] = health
        return health

    def _resolver(self, camera: CameraConfig) -> Callable[[], str | None] | None:
        """For a camera found by mDNS: its URL now (None while it is not found)."""
        discovery, name = self.discovery, camera.mdns_name
        if discovery is None or name is None:
            return None
        return lambda: discovery.url_of(name, camera.rtsp_path)

    def _found(self, found: FoundCamera) -> None:
        """A camera announced itself: with `discover_cameras`, it is used like a configured one."""
        if not self.media.discover_cameras or any(c.config.mdns_name == found.name for c in self.cameras):
            return
        config = CameraConfig(id=camera_id(found.name, set(self.devices)), mdns_name=found.name, label=found.name)
        log.info("camera %r found on the LAN: using it as %s", found.name, config.id)
        self.add_camera(Camera(config, self.media, self.camera_health(config), self._camera_state,
                               resolve=self._resolver(config)))
        self.on_device_change()

    def add_camera(self, camera: Camera) -> None:
        self.cameras.append(camera)
        if self._camera_group is not None:
            self._camera_group.create_task(camera.run())

    async def _camera_state(self, health: DeviceHealth, detail: str) -> None:
        # The same event a serial device's change of state makes: HQ shows it and can alert on it.
        try:
            await self.store([state_event(health, detail, clock_ms())])
        except OutboxError as exc:
            log.error("camera %s: state event not stored: %s", health.device_id, exc)
        self.on_device_change()
        for room in self.rooms.values():
            self._room_changed(room)

    # ---- MQTT ------------------------------------------------------------------------------
    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(wire.call_down_topic(self.gateway_id), 1), *self.uploader.subscriptions]

    def on_message(self, message: Message) -> None:
        self.uploader.on_message(message)
        if message.topic != wire.call_down_topic(self.gateway_id):
            return
        try:
            signal = wire.decode_call_signal(message.payload)
        except wire.WireError as exc:
            log.error("ignoring malformed call signal: %s", exc)
            return
        if signal.type not in (SignalType.OFFER, SignalType.CANDIDATE, SignalType.BYE):
            log.warning("ignoring call signal %s from HQ for %s: not one HQ sends", signal.type, signal.peer_id)
            return
        key = (signal.consultation_id, signal.peer_id)
        inbox = self._inboxes.get(key)
        if inbox is None:
            inbox = self._inboxes[key] = asyncio.Queue()
            self._spawn(self._serve_participant(key, inbox))
        inbox.put_nowait(signal)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_participant(self, key: tuple[str, str], inbox: asyncio.Queue[CallSignal]) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(INBOX_IDLE_S):
                        signal = await inbox.get()
                except TimeoutError:
                    return
                try:
                    await self._handle(signal)
                except Exception:
                    log.exception("call %s: handling %s of participant %s failed", signal.consultation_id,
                                  signal.type, signal.peer_id)
        finally:
            self._inboxes.pop(key, None)

    async def _handle(self, signal: CallSignal) -> None:
        if signal.type is SignalType.OFFER:
            assert signal.sdp is not None and signal.party is not None
            room = self.room(signal.consultation_id)
            try:
                answer = await room.join(signal.peer_id, signal.party, signal.slots, signal.sdp, local=False,
                                         ice=ice_configuration(signal.ice_servers, relay_only=signal.relay_only))
            except (CallFull, OfferError) as exc:
                log.warning("call %s: offer of %s refused: %s", signal.consultation_id, signal.peer_id, exc)
                await self._publish(self._reply(signal, SignalType.ERROR, reason=str(exc)))
                return
            log.info("call %s: %s (%s) joined", signal.consultation_id, signal.peer_id, signal.party.role)
            await self._publish(self._reply(signal, SignalType.ANSWER, sdp=answer))
            self._room_changed(room)
        elif signal.type is SignalType.CANDIDATE:
            current = self.rooms.get(signal.consultation_id)
            peer = current.peers.get(signal.peer_id) if current else None
            if peer is None:
                log.debug("call %s: candidate for %s, who is not connected", signal.consultation_id, signal.peer_id)
                return
            await peer.add_candidate(signal.candidate)
        elif signal.type is SignalType.BYE:
            current = self.rooms.get(signal.consultation_id)
            if current is not None and await current.leave(signal.peer_id):
                log.info("call %s: %s left (%s)", signal.consultation_id, signal.peer_id, signal.reason or "bye")
                self._room_changed(current)

    def _reply(self, signal: CallSignal, kind: SignalType, **fields: object) -> CallSignal:
        return CallSignal(kind, signal.consultation_id, signal.peer_id, clock_ms(), **fields)  # type: ignore[arg-type]

    async def _publish(self, signal: CallSignal) -> None:
        try:
            await self.link.publish(wire.call_up_topic(self.gateway_id), wire.encode_call_signal(signal), qos=1)
        except MqttError as exc:
            log.warning("call %s: %s for %s not sent to HQ: %s", signal.consultation_id, signal.type,
                        signal.peer_id, exc)

    # ---- rooms -----------------------------------------------------------------------------
    def room(self, consultation_id: str) -> CallRoom:
        room = self.rooms.get(consultation_id)
        if room is None:
            room = self.rooms[consultation_id] = CallRoom(consultation_id, self.media, self.cameras,
                                                          on_change=self._room_changed)
            self._room_tasks[consultation_id] = asyncio.create_task(room.run(), name=f"call-{consultation_id}")
            log.info("call %s: started", consultation_id)
        return room

    def _room_changed(self, room: CallRoom) -> None:
        if room.consultation_id not in self._state_due:
            self._state_due.add(room.consultation_id)
            asyncio.get_running_loop().call_later(STATE_DEBOUNCE_S, self._send_states, room.consultation_id)

    def _send_states(self, consultation_id: str) -> None:
        self._state_due.discard(consultation_id)
        room = self.rooms.get(consultation_id)
        if room is None:
            return
        for peer in room.remote_peers():
            self._spawn(self._publish(CallSignal(SignalType.STATE, consultation_id, peer.peer_id, clock_ms(),
                                                 state=room.state_for(peer))))

    async def end_call(self, consultation_id: str) -> None:
        room = self.rooms.pop(consultation_id, None)
        task = self._room_tasks.pop(consultation_id, None)
        if task is not None:
            task.cancel()
        if room is None:
            return
        await self._stop_recording(room)
        for peer in room.remote_peers():
            await self._publish(CallSignal(SignalType.BYE, consultation_id, peer.peer_id, clock_ms(),
                                           reason="the call ended"))
        await room.close()
        log.info("call %s: ended", consultation_id)

    async def _reap(self) -> None:
        """End calls nobody is in, and calls whose remote participants all left `call_idle_s` ago; start and
        stop recordings as consent and participants come and go."""
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            for consultation_id, room in list(self.rooms.items()):
                had_remote = room.last_remote_s > room.started_s
                if not room.peers or (had_remote and not room.has_remote()
                                      and now - room.last_remote_s > self.media.call_idle_s):
                    await self.end_call(consultation_id)
                else:
                    await self._keep_recording(room)

    # ---- recordings ------------------------------------------------------------------------
    async def _keep_recording(self, room: CallRoom) -> None:
        """Record while the clinic consents and a remote participant is in the call."""
        wanted = room.consent and room.has_remote() and bool(self.cameras)
        recorder = self._recorders.get(room.consultation_id)
        if wanted and recorder is None:
            if not self.files.has_room():
                note = "not recorded: the gateway's disk for recordings is full"
                if room.recording_note != note:
                    log.error("call %s: %s (%d bytes wait for upload)", room.consultation_id, note,
                              self.files.used_bytes())
                    room.recording_note = note
                    self._room_changed(room)
                return
            started_ms = clock_ms()
            recording_id = f"{self.gateway_id}.{started_ms}.{secrets.token_hex(3)}"
            path = self.files.begin(recording_id, room.consultation_id, self.config.gateway.clinic_id, started_ms)
            recorder = Recorder(path, self.cameras[0].main, room.voices)
            await recorder.start()
            self._recorders[room.consultation_id] = recorder
            room.recording, room.recording_note = True, None
            log.info("call %s: recording %s started (the clinic consented)", room.consultation_id, recording_id)
            self._room_changed(room)
        elif not wanted and recorder is not None:
            await self._stop_recording(room)

    async def _stop_recording(self, room: CallRoom) -> None:
        recorder = self._recorders.pop(room.consultation_id, None)
        if recorder is None:
            return
        room.recording = False
        self._room_changed(room)
        recording_id = recorder.path.stem
        try:
            written = await recorder.stop()
            manifest = await asyncio.to_thread(self.files.finish, recording_id, written.ended_ms)
        except (RecorderError, OSError) as exc:
            log.error("call %s: recording %s lost: %s", room.consultation_id, recording_id, exc)
            self.files.delete(recording_id)
            return
        log.info("call %s: recording %s finished: %d frames, %d bytes%s", room.consultation_id, recording_id,
                 written.video_frames, manifest.size_bytes,
                 f", {written.dropped} packets dropped" if written.dropped else "")
        await self._announce(manifest)

    async def _announce(self, manifest: Manifest) -> None:
        # In the bulk lane: HQ learns of it (and shows it on the consultation) after everything more urgent.
        entry = Entry(kind="event", metric=RECORDING_EVENT, value=float(manifest.size_bytes), unit="By",
                      time_ms=manifest.started_ms, recv_ms=clock_ms(), patient_id=manifest.patient_id,
                      device_id=self.gateway_id, extra=manifest.event_extra(), lane_hint=Lane.BULK)
        try:
            await self.store([entry])
        except OutboxError as exc:
            log.error("recording %s: announcement not stored (its upload announces it): %s", manifest.recording_id,
                      exc)
        self.uploader.wake()

    def _may_upload(self) -> bool:
        live = any(room.has_remote() for room in self.rooms.values())
        return not self.outbox_busy() and (self.media.upload_during_calls or not live)

    async def _report_quality(self) -> None:
        interval = self.media.stats_interval_s
        while True:
            await asyncio.sleep(interval)
            for room in list(self.rooms.values()):
                if not room.peers:
                    continue
                quality = await room.quality(interval, clock_ms())
                try:
                    # QoS 0: a figure of the last seconds is worth nothing once newer ones exist.
                    await self.link.publish(wire.callstats_topic(self.gateway_id), wire.encode_call_quality(quality),
                                            qos=0)
                    self.quality_sent += 1
                except MqttError as exc:
                    log.debug("call quality not sent: %s", exc)

    async def set_consent(self, consultation_id: str, consent: bool) -> None:
        """The clinic says whether the patient consents to recording this call."""
        room = self.rooms.get(consultation_id)
        if room is None:
            return
        room.consent = consent
        log.info("call %s: consent to record %s", consultation_id, "given" if consent else "withdrawn")
        self._room_changed(room)
        await self._keep_recording(room)

    # ---- screens on the clinic's LAN -------------------------------------------------------
    async def join_local(self, consultation_id: str, peer_id: str | None, name: str, slots: tuple[SlotRole, ...],
                         sdp: str) -> tuple[str, str]:
        """A screen on the LAN offers (with its candidates gathered); returns (its peer id, the answer)."""
        if peer_id is None or not peer_id.startswith(LOCAL_PEER_PREFIX):
            peer_id = LOCAL_PEER_PREFIX + secrets.token_hex(6)
        room = self.room(consultation_id)
        answer = await room.join(peer_id, Party(name, "clinic_staff"), slots, sdp, local=True,
                                 ice=ice_configuration((), relay_only=False))
        self._room_changed(room)
        return peer_id, answer

    async def leave_local(self, consultation_id: str, peer_id: str) -> None:
        room = self.rooms.get(consultation_id)
        if room is not None and peer_id.startswith(LOCAL_PEER_PREFIX) and await room.leave(peer_id):
            self._room_changed(room)

    # ---- observability ---------------------------------------------------------------------
    def metrics(self) -> list[Family]:
        up = self.uploader.stats
        return [
            Family.single("gateway_calls", "gauge", "Calls open on this gateway.", len(self.rooms)),
            Family.single("gateway_call_participants", "gauge", "Participants connected to calls, LAN screens too.",
                          sum(len(r.peers) for r in self.rooms.values())),
            Family("gateway_camera_viewers", "gauge", "Viewers of each camera's main stream and low-rate copy.",
                   {(("camera", c.id), ("tier", tier)): relay.viewers
                    for c in self.cameras for tier, relay in c.tier_relays().items()}),
            Family("gateway_camera_kbps", "gauge", "Bitrate of each camera's main stream (3 s average).",
                   {(("camera", c.id),): c.main.kbps() for c in self.cameras}),
            Family("gateway_camera_opens_total", "counter", "Times each camera was opened (reconnects included).",
                   {(("camera", c.id),): c.opens for c in self.cameras}),
            Family.single("gateway_recordings_active", "gauge", "Calls being recorded.", len(self._recorders)),
            Family.single("gateway_recordings_waiting", "gauge", "Finished recordings waiting for their upload.",
                          len(self.files.pending())),
            Family.single("gateway_recordings_bytes", "gauge", "Disk used by recordings.", self.files.used_bytes()),
            Family.single("gateway_recording_upload_bytes_total", "counter", "Recording bytes sent to HQ.",
                          up.bytes_sent),
            Family.single("gateway_recording_uploads_total", "counter", "Recordings HQ confirmed complete.",
                          up.completed),
            Family.single("gateway_call_quality_reports_total", "counter", "Call-quality reports sent to HQ.",
                          self.quality_sent),
        ]

    # ---- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        for manifest in await asyncio.to_thread(self.files.finish_orphans):
            await self._announce(manifest)
        try:
            async with asyncio.TaskGroup() as tg:
                self._camera_group = tg
                tg.create_task(self.uploader.run())
                if self.discovery is not None:
                    tg.create_task(self.discovery.run())
                for camera in self.cameras:
                    tg.create_task(camera.run(), name=f"camera-{camera.id}")
                tg.create_task(self._reap())
                tg.create_task(self._report_quality())
        finally:
            self._camera_group = None
            await self.close()

    async def close(self) -> None:
        for consultation_id in list(self.rooms):
            with contextlib.suppress(Exception):
                await self.end_call(consultation_id)
        for task in list(self._tasks):
            task.cancel()
