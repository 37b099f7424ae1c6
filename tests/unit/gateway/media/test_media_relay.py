"""The packet relay: each viewer starts at a keyframe, a viewer that falls behind skips ahead to the next
keyframe instead of queueing without bound, a switch to another stream waits for that stream's keyframe, and
timestamps stay on one clock whatever the sources do."""

from __future__ import annotations

import asyncio

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from gateway.media.relay import PacketRelay, RateMeter
from gateway.media.timestamps import TimestampMapper


def packet(tag: int, size: int = 10) -> av.Packet:
    p = av.Packet(bytes([tag % 256]) * size)
    p.pts = tag
    return p


async def drain(track: object, n: int) -> list[int]:
    out = []
    for _ in range(n):
        p = await asyncio.wait_for(track.recv(), 1)  # type: ignore[attr-defined]
        out.append(int(p.pts))
    return out


async def test_a_viewer_starts_at_the_next_keyframe_and_asks_for_one() -> None:
    asked = []
    relay = PacketRelay("cam", "video", on_keyframe_wanted=lambda: asked.append(1))
    relay.push(packet(1), keyframe=True)
    track = relay.subscribe()
    assert asked == [1] and relay.viewers == 1
    relay.push(packet(2), keyframe=False)
    relay.push(packet(3), keyframe=True)
    relay.push(packet(4), keyframe=False)
    assert await drain(track, 2) == [3, 4]
    assert track.counters.dropped == 1


async def test_a_slow_viewer_skips_to_the_next_keyframe_with_bounded_memory() -> None:
    relay = PacketRelay("cam", "video", max_queued=5)
    slow, fast = relay.subscribe(), relay.subscribe()
    pts = 0
    for _gop in range(4):
        for i in range(4):
            pts += 1
            relay.push(packet(pts), keyframe=i == 0)
        assert len(await drain(fast, 4)) == 4
        assert len(slow._queue) <= 5
    # The slow viewer never read: it holds at most the bound, from its newest keyframe on.
    assert await drain(slow, len(slow._queue)) == [13, 14, 15, 16]
    assert slow.counters.overflows >= 1


async def test_audio_is_not_gated_and_drops_oldest_only() -> None:
    relay = PacketRelay("voice", "audio", max_queued=3)
    track = relay.subscribe()
    for i in range(1, 6):
        relay.push(packet(i), keyframe=False)
    assert await drain(track, 3) == [3, 4, 5]
    assert track.counters.dropped == 2


async def test_a_switch_waits_for_the_new_streams_keyframe() -> None:
    main, low = PacketRelay("main", "video"), PacketRelay("low", "video")
    track = main.subscribe()
    main.push(packet(1), keyframe=True)
    track.switch(low)
    assert track.source is main and track.target is low
    low.push(packet(100), keyframe=False)  # not a place to start: ignored
    main.push(packet(2), keyframe=False)  # the old stream goes on meanwhile
    low.push(packet(101), keyframe=True)
    main.push(packet(3), keyframe=False)  # no longer wanted
    low.push(packet(102), keyframe=False)
    assert await drain(track, 4) == [1, 2, 101, 102]
    assert track.source is low and main.viewers == 0 and low.viewers == 1
    track.switch(None)
    assert low.viewers == 0 and track.target is None


async def test_switching_back_before_the_keyframe_calls_the_switch_off() -> None:
    main, low = PacketRelay("main", "video"), PacketRelay("low", "video")
    track = main.subscribe()
    track.switch(low)
    track.switch(main)
    assert track.target is main and main.viewers == 1 and low.viewers == 0


async def test_after_a_restart_viewers_wait_for_the_next_keyframe() -> None:
    relay = PacketRelay("cam", "video")
    track = relay.subscribe()
    relay.push(packet(1), keyframe=True)
    relay.push(packet(2), keyframe=False)
    relay.restart()  # the camera reconnected: its next frames do not follow frame 2
    relay.push(packet(3), keyframe=False)
    relay.push(packet(4), keyframe=True)
    assert await drain(track, 3) == [1, 2, 4]


async def test_stop_ends_a_waiting_recv_and_detaches() -> None:
    relay = PacketRelay("cam", "video")
    track = relay.subscribe()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, 1)
    assert relay.viewers == 0


def test_timestamps_run_on_and_re_anchor_on_jumps() -> None:
    m = TimestampMapper(90_000)
    assert m.map(10.0, 100.0) == 9_000_000
    assert m.map(10.5, 100.5) == 9_045_000
    # The file looped (source time back to 0) half a second later: continues from "now".
    assert m.map(0.0, 101.0) == 9_090_000 and m.rebases == 1
    # A source drifting far from the gateway's clock is re-anchored too.
    assert m.map(5.0, 101.1) == round(101.1 * 90_000) and m.rebases == 2
    # Never backwards, never equal.
    first = m.map(None, 50.0)
    assert first == round(101.1 * 90_000) + 1


def test_rate_meter_windows() -> None:
    meter = RateMeter(window_s=2)
    for i in range(10):
        meter.add(1000, i * 0.2)
    assert meter.kbps(1.8) == pytest.approx(40.0)
    assert meter.per_second(10.0) == 0
