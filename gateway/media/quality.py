"""Call-quality figures of one stream over one interval, from cumulative counters: pure arithmetic, no I/O.

The counters come from RTCP (the receiver's reports of loss and jitter, the round trip) and from the relay (what
was sent); `hq.call_quality` decides what is bad enough to alert on.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.wire import StreamDirection, StreamQuality


@dataclass(frozen=True, slots=True)
class Counters:
    """Cumulative counts of one stream at one moment (monotonic seconds)."""

    at_s: float
    packets: int = 0  # sent (out) or received (in)
    bytes: int = 0
    frames: int = 0  # video frames sent or decoded; audio: 0
    lost: int | None = None  # cumulative packets lost, as the receiving end counts them


@dataclass(frozen=True, slots=True)
class Reported:
    """The latest figures a receiver reported (RTCP), not cumulative."""

    fraction_lost: float | None = None  # 0..1 over the receiver's last report interval
    jitter_ticks: int | None = None  # in the stream's RTP clock
    rtt_s: float | None = None


def stream_quality(name: str, kind: str, direction: StreamDirection, prev: Counters | None, cur: Counters,
                   reported: Reported, clock_rate: int, *, tier: str | None = None,
                   source: str | None = None) -> StreamQuality:
    """The stream's figures since `prev` (None: the first interval, rates unknown)."""
    kbps = fps = loss_pct = None
    if prev is not None and cur.at_s > prev.at_s:
        dt = cur.at_s - prev.at_s
        kbps = max(0, cur.bytes - prev.bytes) * 8 / 1000 / dt
        if kind == "video":
            fps = max(0, cur.frames - prev.frames) / dt
        if cur.lost is not None and prev.lost is not None:
            lost = max(0, cur.lost - prev.lost)
            got = max(0, cur.packets - prev.packets)
            # Out: `packets` were sent and the receiver says `lost` of them never came. In: `packets` came.
            expected = got if direction is StreamDirection.OUT else got + lost
            loss_pct = 100.0 * min(lost, expected) / expected if expected else None
    if reported.fraction_lost is not None and (loss_pct is None or direction is StreamDirection.OUT):
        loss_pct = 100.0 * reported.fraction_lost
    jitter_ms = None if reported.jitter_ticks is None else reported.jitter_ticks * 1000 / clock_rate
    rtt_ms = None if reported.rtt_s is None else reported.rtt_s * 1000
    return StreamQuality(name, kind, direction, rtt_ms=rtt_ms, loss_pct=loss_pct, jitter_ms=jitter_ms, fps=fps,
                         kbps=kbps, tier=tier, source=source)
