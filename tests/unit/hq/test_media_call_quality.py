"""Call-quality alerts: open over the threshold, close only well under it, none for video switched off on
purpose, one for a connection that dropped."""

from __future__ import annotations

from gateway.wire import PeerQuality, StreamDirection, StreamQuality
from hq.call_quality import AlertKind, Thresholds, changes

LIMITS = Thresholds(loss_pct=5, rtt_ms=400, jitter_ms=60, min_fps=8)


def peer(*streams: StreamQuality, state: str = "connected") -> PeerQuality:
    return PeerQuality("p1", "Dr A", "expert", state, False, streams)


def video(**figures: object) -> StreamQuality:
    base: dict[str, object] = {"fps": 30.0, "kbps": 1800.0, "tier": "main", "source": "room"}
    base.update(figures)
    return StreamQuality("camera-0", "video", StreamDirection.OUT, **base)  # type: ignore[arg-type]


def test_an_alert_opens_over_the_threshold_and_closes_well_under_it() -> None:
    opened, closed = changes(peer(video(loss_pct=8.0)), [], LIMITS)
    assert [(f.stream, f.kind, f.value) for f in opened] == [("camera-0", AlertKind.LOSS, 8.0)] and closed == []
    is_open = [("camera-0", AlertKind.LOSS)]
    assert changes(peer(video(loss_pct=4.0)), is_open, LIMITS) == ([], [])  # under 5, not under 3: stays open
    assert changes(peer(video(loss_pct=2.0)), is_open, LIMITS) == ([], [("camera-0", AlertKind.LOSS)])


def test_a_frozen_picture_alerts_but_video_switched_off_for_a_weak_link_does_not() -> None:
    opened, _ = changes(peer(video(fps=0.0)), [], LIMITS)
    assert [f.kind for f in opened] == [AlertKind.LOW_FPS]
    assert changes(peer(video(fps=0.0, tier="off")), [], LIMITS) == ([], [])
    # A slot with nothing in it (no second camera) is not frozen either.
    assert changes(peer(video(fps=0.0, source=None)), [], LIMITS) == ([], [])


def test_a_frozen_picture_alert_closes_once_the_rate_is_a_quarter_over_the_floor() -> None:
    is_open = [("camera-0", AlertKind.LOW_FPS)]
    assert changes(peer(video(fps=9.0)), is_open, LIMITS) == ([], [])  # over 8, not yet over 10: stays open
    assert changes(peer(video(fps=12.0)), is_open, LIMITS) == ([], [("camera-0", AlertKind.LOW_FPS)])


def test_rtt_and_jitter_and_a_dropped_connection() -> None:
    audio = StreamQuality("clinic-audio", "audio", StreamDirection.OUT, rtt_ms=650.0, jitter_ms=80.0, loss_pct=0.0)
    kinds = sorted(str(f.kind) for f in changes(peer(audio), [], LIMITS)[0])
    assert kinds == ["jitter", "rtt"]
    opened, closed = changes(peer(audio, state="disconnected"), [("clinic-audio", AlertKind.RTT)], LIMITS)
    assert [f.kind for f in opened] == [AlertKind.DISCONNECTED]
    assert closed == [("clinic-audio", AlertKind.RTT)]
