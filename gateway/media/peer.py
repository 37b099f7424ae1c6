"""One participant's WebRTC connection to the gateway: answers their offer slot by slot, sends each of their
screen's slots what the room gives it (through a relayed track), receives their microphone and camera, and
reports each stream's quality.

The offer's `slots` say what each m-line carries, so transceivers are made in offer order, with H.264 forced on
every video the gateway sends, before the offer is applied (aiortc would otherwise answer VP8 and send H.264
packets labelled as VP8). Not the room's policy of who sees what: `gateway.media.room` decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aioice.ice
import aioice.stun
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from gateway.config import MediaSection
from gateway.media import rtcp
from gateway.media.bitrate import TierController, TierPolicy
from gateway.media.party import PartyMedia
from gateway.media.quality import Counters, Reported, stream_quality
from gateway.media.relay import PacketRelay, RelayedTrack
from gateway.media.timestamps import AUDIO_CLOCK, VIDEO_CLOCK
from gateway.wire import IceCandidate, IceServer, Party, PeerQuality, SlotRole, StreamDirection, StreamQuality

log = logging.getLogger(__name__)

SILENT_PEER_S = 4.0  # connected, but no RTCP from the participant for this long: shown as disconnected


class OfferError(ValueError):
    """An offer that does not match its slots (or that aiortc cannot answer); the reason goes back to HQ."""


def ice_configuration(servers: tuple[IceServer, ...], *, relay_only: bool) -> RTCConfiguration:
    # max-bundle: with aiortc's default ("balanced"), every audio m-line after the first of an answer got no
    # transport (port 9) and never carried media; one transport for everything is what browsers use anyway.
    return RTCConfiguration(
        iceServers=[RTCIceServer(list(s.urls), s.username, s.credential) for s in servers],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def restrict_host_addresses(addresses: list[str]) -> None:
    """Offer only these local addresses as ICE host candidates, process-wide (aioice offers every address but
    loopback): e.g. not a management network's, or only loopback in tests."""
    wanted = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in wanted if (use_ipv6 if ":" in a else use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


CONSENT_RETRANSMISSIONS = 3  # a consent check waits 0.5 + 1 + 2 + 4 s for its answer


def tolerate_slow_links() -> None:
    """Keep calls over links with a long round trip, process-wide.

    aioice gives each consent check (RFC 7675, one every ~5 s) half a second for its answer and drops the
    connection after six misses: over a satellite or congested mobile link (round trip over 500 ms), or from a
    starved CPU, every call ended after 30 s. Here a check may wait 7.5 s (retransmitted like any STUN
    request); consent still expires on a link that stays dead.
    """
    ice = aioice.ice

    async def query_consent(self: Any) -> None:
        assert self.remote_password is not None
        failures = 0
        while True:
            await asyncio.sleep(ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
            for pair in self._nominated.values():
                request = self.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(request, pair.remote_addr,
                                                integrity_key=self.remote_password.encode("utf8"),
                                                retransmissions=CONSENT_RETRANSMISSIONS)
                    failures = 0
                except aioice.stun.TransactionError:
                    failures += 1
                if failures >= ice.CONSENT_FAILURES:
                    log.info("ICE consent to send expired for %s", pair)
                    self._query_consent_task = None
                    await self.close()
                    return

    ice.Connection.query_consent = query_consent  # type: ignore[method-assign]


def media_kinds(sdp: str) -> list[str]:
    """The kind of each audio/video m-line of an SDP, in order (data channels left out)."""
    kinds = [line[2:].split(" ", 1)[0] for line in sdp.splitlines() if line.startswith("m=")]
    return [k for k in kinds if k in ("audio", "video")]


def _codecs(kind: str, mime_types: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for mime in mime_types for c in capabilities if c.mimeType == mime]
    return chosen + [c for c in capabilities if c.mimeType == f"{kind}/rtx"]


@dataclass(eq=False)
class Slot:
    role: SlotRole
    index: int  # among the slots of its role, in offer order
    transceiver: RTCRtpTransceiver
    track: RelayedTrack | None = None  # what the gateway sends in it
    feedback: rtcp.SenderFeedback | None = None
    previous: Counters | None = None
    sources: dict[PacketRelay, str] = field(default_factory=dict)  # relay -> the name viewers see for it

    @property
    def name(self) -> str:
        numbered = self.role in (SlotRole.CAMERA, SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO)
        return f"{self.role}-{self.index}" if numbered else str(self.role)


class PeerSession:
    def __init__(self, peer_id: str, party: Party, slots: tuple[SlotRole, ...], media: MediaSection, *,
                 local: bool, ice: RTCConfiguration, on_change: Callable[[PeerSession], None]) -> None:
        self.peer_id = peer_id
        self.party = party
        self.local = local
        self.roles = slots
        self.pc = RTCPeerConnection(ice)
        self.uplink = PartyMedia(peer_id, media)
        self.controller = TierController(TierPolicy(probe_after_s=media.tier_probe_s,
                                                    probe_max_s=12 * media.tier_probe_s), now_s=time.monotonic())
        self.slots: list[Slot] = []
        self.created_s = time.monotonic()
        self._on_change = on_change
        self._closed = False

        @self.pc.on("connectionstatechange")
        def changed() -> None:
            log.info("call participant %s (%s): connection %s", peer_id, party.role, self.pc.connectionState)
            on_change(self)

    @property
    def state(self) -> str:
        state = str(self.pc.connectionState)
        if state == "connected" and not self.local and self._silent():
            return "disconnected"
        return state

    def _silent(self) -> bool:
        """No RTCP from the participant lately: its network is down, though ICE has not given up yet."""
        heard = [s.feedback.last_report_s for s in self.slots
                 if s.feedback is not None and s.feedback.last_report_s is not None]
        return bool(heard) and time.monotonic() - max(heard) > SILENT_PEER_S

    def slots_of(self, role: SlotRole) -> list[Slot]:
        return [s for s in self.slots if s.role is role]

    async def answer(self, offer_sdp: str) -> str:
        kinds = media_kinds(offer_sdp)
        if kinds != [r.kind for r in self.roles]:
            raise OfferError(f"the offer's media lines ({', '.join(kinds) or 'none'}) do not match its slots "
                             f"({', '.join(r.kind for r in self.roles)})")
        counts: dict[SlotRole, int] = {}
        for role in self.roles:
            index = counts.get(role, 0)
            counts[role] = index + 1
            direction = "sendonly" if role.gateway_sends else "recvonly"
            transceiver = self.pc.addTransceiver(role.kind, direction=direction)
            slot = Slot(role, index, transceiver)
            if role.gateway_sends:
                slot.track = RelayedTrack(role.kind)
                transceiver.sender.replaceTrack(slot.track)
                slot.feedback = rtcp.listen(transceiver.sender)
                if role.kind == "video":
                    # Relayed as it comes from the camera: H.264, or nothing.
                    transceiver.setCodecPreferences(_codecs("video", ("video/H264",)))
            elif role.kind == "video":
                transceiver.setCodecPreferences(_codecs("video", ("video/VP8", "video/H264")))
            self.slots.append(slot)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.uplink.attach(track)

        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except (ValueError, AssertionError) as exc:
            raise OfferError(f"the offer cannot be answered: {exc or type(exc).__name__}") from exc
        for slot in self.slots:
            if slot.feedback is not None:
                slot.feedback.ssrc = slot.transceiver.sender._ssrc  # fixed by now
        return str(self.pc.localDescription.sdp)

    async def add_candidate(self, candidate: IceCandidate | None) -> None:
        if candidate is None:
            await self.pc.addIceCandidate(None)
            return
        text = candidate.candidate.removeprefix("candidate:")
        if not text.strip():
            await self.pc.addIceCandidate(None)  # an empty candidate is how some browsers end the list
            return
        try:
            parsed = candidate_from_sdp(text)
        except (AssertionError, ValueError, IndexError):
            log.warning("call participant %s: ignoring malformed ICE candidate %r", self.peer_id, candidate.candidate)
            return
        parsed.sdpMid = candidate.sdp_mid
        parsed.sdpMLineIndex = candidate.sdp_mline_index
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            parsed.sdpMLineIndex = 0
        await self.pc.addIceCandidate(parsed)

    def send(self, slot: Slot, relay: PacketRelay | None, label: str | None = None) -> None:
        """Give a sending slot a source (None: nothing); a video switch happens at the source's next keyframe."""
        if slot.track is None:
            return
        if relay is not None and label is not None:
            slot.sources[relay] = label
        slot.track.switch(relay)

    async def quality(self, *, tiers: dict[str, str]) -> PeerQuality:
        """Each stream's figures since the last call; `tiers`: the tier of each camera slot now."""
        now = time.monotonic()
        streams: list[StreamQuality] = []
        for slot in self.slots:
            kind = slot.role.kind
            clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
            if slot.track is not None and slot.feedback is not None:
                rtt = await _sender_rtt(slot.transceiver.sender)
                c = slot.track.counters
                current = Counters(now, c.packets, c.bytes, c.packets if kind == "video" else 0,
                                   slot.feedback.packets_lost)
                target = slot.track.target
                source = None if target is None else slot.sources.get(target, target.name)
                reported = Reported(slot.feedback.fraction_lost, slot.feedback.jitter_ticks, rtt)
                quality = stream_quality(slot.name, kind, StreamDirection.OUT, slot.previous, current, reported,
                                         clock, tier=tiers.get(slot.name), source=source)
                if c.packets == 0:
                    quality = replace(quality, fps=None)  # not started yet (waiting for a keyframe): not frozen
                streams.append(quality)
            else:
                current, reported = await _receiver_counters(slot.transceiver.receiver, now,
                                                             self.uplink.frames_in[kind])
                streams.append(stream_quality(slot.name, kind, StreamDirection.IN, slot.previous, current, reported,
                                              clock, source=self.peer_id))
            slot.previous = current
        return PeerQuality(self.peer_id, self.party.name, self.party.role, self.state, self.local, tuple(streams))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.pc.close()
        for slot in self.slots:
            if slot.track is not None:
                slot.track.stop()
        await self.uplink.close()


async def _sender_rtt(sender: RTCRtpSender) -> float | None:
    stats = await sender.getStats()
    for item in stats.values():
        if getattr(item, "type", None) == "remote-inbound-rtp":
            rtt = getattr(item, "roundTripTime", None)
            # aiortc's smoothed RTT goes negative for a while after a report about an older sender report.
            return float(rtt) if rtt is not None and rtt >= 0 else None
    return None


async def _receiver_counters(receiver: RTCRtpReceiver, now: float, frames: int) -> tuple[Counters, Reported]:
    packets = lost = octets = 0
    jitter = None
    seen = False
    for item in (await receiver.getStats()).values():
        kind = getattr(item, "type", None)
        if kind == "inbound-rtp":
            seen = True
            packets += item.packetsReceived
            lost += item.packetsLost
            jitter = item.jitter
        elif kind == "remote-outbound-rtp":
            octets += item.bytesSent
    return Counters(now, packets, octets, frames, lost if seen else None), Reported(jitter_ticks=jitter)
