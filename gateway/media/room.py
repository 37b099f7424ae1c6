"""One consultation's call on the gateway: who is connected, what each participant's slots carry (the clinic's
cameras and voice, every other participant's voice and picture), each remote viewer's video tier, the
clinic's consent to record.

Voice before picture: a viewer whose link cannot carry everything first loses the other participants' and
the second camera's video, then gets the main camera's low-rate copy, then no video at all; its voices stay.
Not the WebRTC connections themselves (`gateway.media.peer`) nor signalling (`gateway.media.service`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from aiortc import RTCConfiguration

from gateway.config import MediaSection
from gateway.media.bitrate import LinkReport
from gateway.media.camera import Camera
from gateway.media.peer import PeerSession, Slot
from gateway.media.relay import PacketRelay
from gateway.wire import CallQuality, CallState, Party, SlotRole, SlotSource

log = logging.getLogger(__name__)

CLINIC_VOICE_LABEL = "Clinic"
CONTROL_INTERVAL_S = 1.0
DEAD_PEER_GRACE_S = 15.0


class CallFull(Exception):
    """The call has as many remote participants as the gateway serves; the message is for the participant."""


class CallRoom:
    def __init__(self, consultation_id: str, media: MediaSection, cameras: Sequence[Camera], *,
                 on_change: Callable[[CallRoom], None] | None = None, dead_peer_grace_s: float = DEAD_PEER_GRACE_S
                 ) -> None:
        self.consultation_id = consultation_id
        self.media = media
        self.cameras = list(cameras)
        self.peers: dict[str, PeerSession] = {}  # in join order (a participant who re-dials keeps their place)
        self.consent = False
        self.recording_note: str | None = None
        self.recording = False  # set by the recorder while it writes
        self.started_s = time.monotonic()
        self.last_remote_s = self.started_s  # when a remote participant was last connected
        self._on_change = on_change
        self._tiers: dict[str, dict[str, str]] = {}  # peer -> slot name -> tier
        self._closing: set[asyncio.Task[None]] = set()
        self._dead_since: dict[str, float] = {}  # peer -> when its connection was found closed or failed
        self.dead_peer_grace_s = dead_peer_grace_s

    # ---- who is in the call ------------------------------------------------------------
    def remote_peers(self) -> list[PeerSession]:
        return [p for p in self.peers.values() if not p.local]

    def has_remote(self) -> bool:
        return any(p.state not in ("closed", "failed") for p in self.remote_peers())

    async def join(self, peer_id: str, party: Party, slots: tuple[SlotRole, ...], sdp: str, *, local: bool,
                   ice: RTCConfiguration) -> str:
        """Answer a participant's offer; a participant already here (re-dialling after a change of network)
        keeps their place and their new connection replaces the old one."""
        old = self.peers.get(peer_id)
        if old is None and not local and len(self.remote_peers()) >= self.media.max_remote_parties:
            raise CallFull(f"this call already has {self.media.max_remote_parties} remote participants, "
                           "the most this clinic's gateway serves")
        session = PeerSession(peer_id, party, slots, self.media, local=local, ice=ice, on_change=self._peer_changed)
        try:
            answer = await session.answer(sdp)
        except BaseException:
            await session.close()
            raise
        self.peers[peer_id] = session
        if old is not None:
            log.info("call %s: participant %s reconnected; the new connection replaces the old one",
                     self.consultation_id, peer_id)
            # Not awaited: closing a connection whose path died can wait on it for long, the answer must not.
            closing = asyncio.create_task(old.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        self.assign()
        return answer

    async def leave(self, peer_id: str) -> bool:
        session = self.peers.pop(peer_id, None)
        self._tiers.pop(peer_id, None)
        if session is None:
            return False
        await session.close()
        self.assign()
        return True

    def _peer_changed(self, session: PeerSession) -> None:
        self.assign()
        if self._on_change is not None:
            self._on_change(self)

    # ---- what each slot carries ----------------------------------------------------------
    def clinic_voice(self) -> tuple[PacketRelay, str] | None:
        """A screen on the clinic's LAN sending its microphone, else the first camera with a microphone."""
        for peer in self.peers.values():
            if peer.local and peer.uplink.sends("audio"):
                return peer.uplink.voice, CLINIC_VOICE_LABEL
        for camera in self.cameras:
            if camera.has_audio:
                return camera.audio, camera.label
        return None

    def parties_for(self, viewer: PeerSession) -> list[PeerSession]:
        """The other participants a viewer sees and hears, in join order: remote ones, and screens on the LAN
        that send a picture (their voice is the clinic's)."""
        return [p for p in self.peers.values()
                if p is not viewer and p.state not in ("closed", "failed") and (not p.local or p.uplink.sends("video"))]

    def assign(self) -> None:
        voice = self.clinic_voice()
        for viewer in self.peers.values():
            tier = "main" if viewer.local else viewer.controller.tier
            secondary_video = tier == "main"  # other video goes first when the link is short
            tiers: dict[str, str] = {}
            for slot in viewer.slots_of(SlotRole.CAMERA):
                relay, label, slot_tier = self._camera_source(slot, tier, secondary_video)
                viewer.send(slot, relay, label)
                tiers[slot.name] = slot_tier
            for slot in viewer.slots_of(SlotRole.CLINIC_AUDIO):
                own = voice is not None and voice[0] is viewer.uplink.voice
                # A screen in the clinic hears the room itself: no clinic voice back to it (no echo).
                viewer.send(slot, None if (voice is None or own or viewer.local) else voice[0],
                            None if voice is None else voice[1])
            parties = self.parties_for(viewer)
            for slot in viewer.slots_of(SlotRole.PARTY_AUDIO):
                party = parties[slot.index] if slot.index < len(parties) else None
                relay = None if party is None or party.local else party.uplink.voice
                viewer.send(slot, relay, None if party is None else party.party.name)
            for slot in viewer.slots_of(SlotRole.PARTY_VIDEO):
                party = parties[slot.index] if slot.index < len(parties) else None
                on = party is not None and secondary_video
                viewer.send(slot, party.uplink.video if on and party else None,
                            None if party is None else party.party.name)
                tiers[slot.name] = "main" if on else "off"
            self._tiers[viewer.peer_id] = tiers

    def _camera_source(self, slot: Slot, tier: str, secondary_video: bool) -> tuple[PacketRelay | None, str, str]:
        if slot.index >= len(self.cameras):
            return None, "", "off"
        camera = self.cameras[slot.index]
        if slot.index > 0:
            return (camera.main, camera.label, "main") if secondary_video else (None, camera.label, "off")
        relays = camera.tier_relays()
        return relays.get(tier), camera.label, tier

    # ---- adapting to each viewer's link --------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: `control` once a second (who sends what changes as media starts and stops)."""
        while True:
            await asyncio.sleep(CONTROL_INTERVAL_S)
            self.control(time.monotonic())

    def control(self, now_s: float) -> None:
        """Once a second: forget dead connections, and each remote viewer's tier from what its receiver reported."""
        self._drop_dead(now_s)
        if self.has_remote():
            self.last_remote_s = now_s
        changed = False
        camera = self.cameras[0] if self.cameras else None
        for viewer in self.remote_peers():
            if camera is None:
                continue
            feedback = [s.feedback for s in viewer.slots if s.feedback is not None and s.feedback.reports]
            losses = [f.fraction_lost for f in feedback if f.fraction_lost is not None]
            rembs = [r for f in feedback if (r := f.remb_kbps()) is not None]
            report = LinkReport(loss_fraction=max(losses) if losses else None,
                                remb_kbps=max(rembs) if rembs else None)
            rates = camera.tier_kbps()
            extra = sum(s.track.meter.kbps(now_s) for s in viewer.slots
                        if s.track is not None and s.role.kind == "video" and s.name != "camera-0")
            before = viewer.controller.tier
            after = viewer.controller.update(report, {"main": rates["main"] + extra, "low": rates["low"]}, now_s)
            if after != before:
                changed = True
                log.info("call %s: video to %s goes %s -> %s (loss %s, estimate %s kbps)", self.consultation_id,
                         viewer.peer_id, before, after,
                         "?" if report.loss_fraction is None else f"{report.loss_fraction:.0%}",
                         "?" if viewer.controller.estimate_kbps is None else f"{viewer.controller.estimate_kbps:.0f}")
        self.assign()
        if changed and self._on_change is not None:
            self._on_change(self)

    def voices(self) -> dict[str, PacketRelay]:
        """Every voice in the call now, for its recording: the clinic's and each remote participant's."""
        found = {p.peer_id: p.uplink.voice for p in self.remote_peers() if p.state not in ("closed", "failed")}
        clinic = self.clinic_voice()
        if clinic is not None:
            found["clinic"] = clinic[0]
        return found

    def _drop_dead(self, now_s: float) -> None:
        """A connection closed or failed for `dead_peer_grace_s` is gone (a browser closed without saying goodbye,
        a network that never came back): its participant leaves. Within the grace, a re-dial keeps their place."""
        for peer_id, session in list(self.peers.items()):
            if session.state in ("closed", "failed"):
                since = self._dead_since.setdefault(peer_id, now_s)
                if now_s - since >= self.dead_peer_grace_s:
                    log.info("call %s: the connection of %s is %s: they left", self.consultation_id, peer_id,
                             session.state)
                    self._dead_since.pop(peer_id, None)
                    self.peers.pop(peer_id, None)
                    self._tiers.pop(peer_id, None)
                    closing = asyncio.create_task(session.close())
                    self._closing.add(closing)
                    closing.add_done_callback(self._closing.discard)
                    if self._on_change is not None:
                        self._on_change(self)
            else:
                self._dead_since.pop(peer_id, None)

    # ---- reporting -------------------------------------------------------------------------
    async def quality(self, interval_s: float, time_ms: int) -> CallQuality:
        peers = [await p.quality(tiers=self._tiers.get(p.peer_id, {})) for p in list(self.peers.values())]
        return CallQuality(self.consultation_id, time_ms, interval_s, self.recording, tuple(peers))

    def state_for(self, viewer: PeerSession) -> CallState:
        sources = []
        for slot in viewer.slots:
            if not slot.role.gateway_sends:
                continue
            source, label, state = None, "", None
            if slot.role is SlotRole.CAMERA and slot.index < len(self.cameras):
                camera = self.cameras[slot.index]
                source, label, state = camera.id, camera.label, camera.health.state
            elif slot.role is SlotRole.CLINIC_AUDIO:
                voice = self.clinic_voice()
                label = CLINIC_VOICE_LABEL if voice is not None else ""
                source = "clinic" if voice is not None else None
            else:
                parties = self.parties_for(viewer)
                if slot.index < len(parties):
                    party = parties[slot.index]
                    source, label, state = party.peer_id, party.party.name, party.state
            sources.append(SlotSource(slot.name, source, label, state))
        return CallState(tuple(sources), self.recording, self.consent, self.recording_note)

    async def close(self) -> None:
        for peer_id in list(self.peers):
            await self.leave(peer_id)
