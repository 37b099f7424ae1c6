"""What a viewer's receiver tells one of the gateway's RTP senders over RTCP: loss and jitter (receiver
reports), its bandwidth estimate (REMB) and requests for a keyframe (PLI/FIR).

aiortc uses REMB only to tune its own encoder, which a relayed stream does not have, and keeps receiver reports
to itself; this listens in on the sender's RTCP (wrapping its handler, which aiortc calls per packet) and keeps
the latest values. Not a congestion controller: `gateway.media.bitrate` decides.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)


@dataclass(slots=True)
class SenderFeedback:
    ssrc: int
    fraction_lost: float | None = None  # 0..1, from the latest receiver report
    packets_lost: int | None = None  # cumulative
    jitter_ticks: int | None = None
    remb_bps: int | None = None
    remb_at_s: float | None = None
    keyframe_requests: int = 0
    reports: int = 0
    last_report_s: float | None = None  # when the receiver last reported on this stream
    on_keyframe_request: Callable[[], None] | None = None

    def observe(self, packet: Any) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    self.fraction_lost = report.fraction_lost / 256
                    self.packets_lost = report.packets_lost
                    self.jitter_ticks = report.jitter
                    self.reports += 1
                    self.last_report_s = time.monotonic()
        elif isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR) and packet.media_ssrc == self.ssrc:
                self.keyframe_requests += 1
                if self.on_keyframe_request is not None:
                    self.on_keyframe_request()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self.ssrc in ssrcs:
                    self.remb_bps, self.remb_at_s = bitrate, time.monotonic()

    def remb_kbps(self, max_age_s: float = 5.0) -> float | None:
        if self.remb_bps is None or self.remb_at_s is None or time.monotonic() - self.remb_at_s > max_age_s:
            return None
        return self.remb_bps / 1000


def listen(sender: RTCRtpSender) -> SenderFeedback:
    """Start keeping `sender`'s RTCP feedback; call before the connection starts."""
    feedback = SenderFeedback(sender._ssrc)
    handle: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet

    async def observed(packet: Any) -> None:
        feedback.observe(packet)
        await handle(packet)

    sender._handle_rtcp_packet = observed  # type: ignore[method-assign]
    return feedback
