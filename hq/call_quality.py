"""When a call's quality is bad enough to alert: rules over one stream's figures, with hysteresis. Pure, no I/O.

An alert opens when a figure crosses its threshold and closes when it is back under `CLEAR_RATIO` of it (a
frame rate: back over `FPS_CLEAR_RATIO` times its floor), so a figure hovering at the threshold does not flap.
`hq.calls` stores the samples and the alerts.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.wire import PeerQuality, StreamDirection, StreamQuality

CLEAR_RATIO = 0.6
# Not 1 / CLEAR_RATIO: with an 8 fps floor that would ask 13.3 fps of a 15 fps camera before a frozen picture's
# alert closes, which a camera that is fine again but drops a frame or two per interval never reaches.
FPS_CLEAR_RATIO = 1.25


class AlertKind(enum.StrEnum):
    LOSS = "loss"  # packet loss above the threshold
    RTT = "rtt"  # round trip too long for a conversation
    JITTER = "jitter"
    LOW_FPS = "low_fps"  # video that should flow runs below the threshold (0: the picture froze)
    DISCONNECTED = "disconnected"  # the participant's connection dropped (or went silent)


@dataclass(frozen=True, slots=True)
class Thresholds:
    loss_pct: float = 5.0
    rtt_ms: float = 400.0
    jitter_ms: float = 60.0
    min_fps: float = 8.0


@dataclass(frozen=True, slots=True)
class Finding:
    """A figure over its threshold (or back under its clearing level)."""

    stream: str  # "" for the connection as a whole
    kind: AlertKind
    value: float
    threshold: float


def _expects_video(stream: StreamQuality) -> bool:
    # Video the gateway switched off for a weak link (tier "off") is not expected to flow: no frame-rate alert.
    return stream.kind == "video" and stream.tier != "off" and (
        stream.direction is StreamDirection.OUT or (stream.kbps or 0) > 0)


def findings(peer: PeerQuality, limits: Thresholds, *, clearing: bool = False) -> list[Finding]:
    """What is over its threshold in this sample (`clearing`: what is not yet back under its clearing level)."""
    scale = CLEAR_RATIO if clearing else 1.0
    out: list[Finding] = []
    if peer.state in ("disconnected", "failed"):
        out.append(Finding("", AlertKind.DISCONNECTED, 1.0, 1.0))
        return out  # figures of a connection that is down say nothing more
    for s in peer.streams:
        if s.loss_pct is not None and s.loss_pct > limits.loss_pct * scale:
            out.append(Finding(s.stream, AlertKind.LOSS, s.loss_pct, limits.loss_pct))
        if s.rtt_ms is not None and s.rtt_ms > limits.rtt_ms * scale:
            out.append(Finding(s.stream, AlertKind.RTT, s.rtt_ms, limits.rtt_ms))
        if s.jitter_ms is not None and s.jitter_ms > limits.jitter_ms * scale:
            out.append(Finding(s.stream, AlertKind.JITTER, s.jitter_ms, limits.jitter_ms))
        if s.fps is not None and _expects_video(s) and s.source is not None:
            floor = limits.min_fps * FPS_CLEAR_RATIO if clearing else limits.min_fps
            if s.fps < floor:
                out.append(Finding(s.stream, AlertKind.LOW_FPS, s.fps, limits.min_fps))
    return out


def changes(peer: PeerQuality, open_alerts: Iterable[tuple[str, AlertKind]],
            limits: Thresholds) -> tuple[list[Finding], list[tuple[str, AlertKind]]]:
    """(alerts to open, alerts to close) for one participant's sample, given the alerts open now."""
    open_now = set(open_alerts)
    over = findings(peer, limits)
    still = {(f.stream, f.kind) for f in findings(peer, limits, clearing=True)}
    to_open = [f for f in over if (f.stream, f.kind) not in open_now]
    to_close = sorted(key for key in open_now if key not in still)
    return to_open, to_close
