"""The call signalling, call quality and recording messages of the wire contract: round trips, and bad
payloads rejected with a WireError that names the field."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import wire
from gateway.wire import (
    CallQuality,
    CallSignal,
    IceCandidate,
    IceServer,
    Party,
    PeerQuality,
    RecordingChunk,
    RecordingOffer,
    RecordingProgress,
    RecordingState,
    SignalType,
    SlotRole,
    StreamDirection,
    StreamQuality,
    WireError,
)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def test_topics_stay_under_the_gateways_own_prefix() -> None:
    for topic in (wire.call_down_topic("gw-1"), wire.call_up_topic("gw-1"), wire.callstats_topic("gw-1"),
                  wire.recording_up_topic("gw-1"), wire.recording_down_topic("gw-1")):
        assert topic.startswith("clinic/gw-1/")
        assert wire.gateway_of_topic(topic) == "gw-1"


@pytest.mark.parametrize("signal", [
    CallSignal(SignalType.OFFER, "C-1", "p1", 5, sdp=SDP,
               slots=(SlotRole.CAMERA, SlotRole.CLINIC_AUDIO, SlotRole.SEND_AUDIO, SlotRole.PARTY_VIDEO),
               ice_servers=(IceServer(("stun:s.example:3478",)), IceServer(("turn:t.example:3478",), "u", "p")),
               relay_only=True, party=Party("Dr Wang 王", "expert")),
    CallSignal(SignalType.ANSWER, "C-1", "p1", 6, sdp=SDP),
    CallSignal(SignalType.CANDIDATE, "C-1", "p1", 7,
               candidate=IceCandidate("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "0", 0)),
    CallSignal(SignalType.CANDIDATE, "C-1", "p1", 8, candidate=None),
    CallSignal(SignalType.BYE, "C-1", "p1", 9, reason="left"),
    CallSignal(SignalType.ERROR, "C-1", "p1", 9, reason="too many parties"),
    CallSignal(SignalType.STATE, "C-1", "p1", 10, state=wire.CallState(
        (wire.SlotSource("camera-0", "room", "Room camera", "ok"), wire.SlotSource("party-video-0", None, "")),
        recording=True, consent=True, note=None)),
])
def test_call_signal_round_trip(signal: CallSignal) -> None:
    assert wire.decode_call_signal(wire.encode_call_signal(signal)) == signal


def _signal(**doc: object) -> bytes:
    base: dict[str, object] = {"v": 1, "type": "offer", "consultation": "C-1", "peer": "p1", "time_ms": 1,
                               "sdp": SDP, "slots": ["camera"], "party": {"name": "x", "role": "expert"}}
    base.update(doc)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(("payload", "message"), [
    (_signal(type="hello"), "type"),
    (_signal(consultation="../etc"), "consultation"),
    (_signal(peer=""), "peer"),
    (_signal(sdp=...), "sdp"),
    (_signal(slots=...), "slots"),
    (_signal(slots=["camera", "projector"]), "slots"),
    (_signal(party=...), "party"),
    (_signal(type="candidate", candidate={"candidate": 5}), "candidate"),
    (_signal(type="candidate"), "candidate"),
    (_signal(ice_servers=[{"urls": ["http://x"]}]), "urls"),
    (_signal(v=2), "version"),
    (_signal(type="state"), "state"),
    (_signal(type="state", state={"slots": [{"slot": 1}], "recording": True, "consent": True}), "slot"),
    (b"not json", "JSON"),
])
def test_bad_call_signals_are_rejected_naming_the_field(payload: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.decode_call_signal(payload)


def test_slot_roles_know_their_kind_and_direction() -> None:
    assert SlotRole.CAMERA.kind == "video" and SlotRole.CAMERA.gateway_sends
    assert SlotRole.SEND_AUDIO.kind == "audio" and not SlotRole.SEND_AUDIO.gateway_sends
    assert SlotRole.PARTY_AUDIO.kind == "audio" and SlotRole.PARTY_AUDIO.gateway_sends


def test_call_quality_round_trip_rounds_figures() -> None:
    quality = CallQuality("C-1", 1000, 5.0, True, (
        PeerQuality("p1", "Dr A", "expert", "connected", False, (
            StreamQuality("camera-0", "video", StreamDirection.OUT, rtt_ms=12.5, loss_pct=0.25, jitter_ms=3.0,
                          fps=29.97, kbps=1800.0, tier="main", source="room"),
            StreamQuality("send-audio", "audio", StreamDirection.IN, loss_pct=0.0, kbps=31.9),
        )),
        PeerQuality("local-1", "Clinic screen", "clinic_staff", "connecting", True),
    ))
    assert wire.decode_call_quality(wire.encode_call_quality(quality)) == quality


@pytest.mark.parametrize(("change", "message"), [
    ({"interval_s": 0}, "interval_s"),
    ({"peers": [{"peer": "p1", "name": "a", "role": "r", "state": "new", "local": False,
                 "streams": [{"stream": "s", "kind": "smell", "dir": "in"}]}]}, "kind"),
    ({"peers": [{"peer": "p1", "name": "a", "role": "r", "state": "new", "local": False,
                 "streams": [{"stream": "s", "kind": "audio", "dir": "in", "loss_pct": -1}]}]}, "loss_pct"),
    ({"peers": [{"peer": "p 1", "name": "a", "role": "r", "state": "new", "local": False, "streams": []}]}, "peer"),
])
def test_bad_call_quality_is_rejected(change: dict[str, object], message: str) -> None:
    doc = {"v": 1, "consultation": "C-1", "time_ms": 1, "interval_s": 5, "recording": False, "peers": []}
    doc.update(change)
    with pytest.raises(WireError, match=message):
        wire.decode_call_quality(json.dumps(doc).encode())


def test_recording_messages_round_trip() -> None:
    offer = RecordingOffer("gw-1.C-1.1700000000000", "C-1", "clinic-a", 1, 2, 10, "ab" * 32, patient_id="P1")
    assert wire.decode_recording_up(wire.encode_recording_offer(offer)) == offer
    chunk = RecordingChunk("gw-1.C-1.1700000000000", 4, 13, b"\x00\x01{binary")
    assert wire.decode_recording_up(wire.encode_recording_chunk(chunk)) == chunk
    for state in RecordingState:
        progress = RecordingProgress("r-1", 7, state, "why" if state is RecordingState.REFUSED else None)
        assert wire.decode_recording_progress(wire.encode_recording_progress(progress)) == progress


@pytest.mark.parametrize(("payload", "message"), [
    (wire.encode_recording_chunk(RecordingChunk("r-1", 8, 10, b"abc")), "outside"),
    (wire.encode_recording_chunk(RecordingChunk("r/1", 0, 10, b"abc")), "recording id"),
    (b"\x07\x00\x02{}", "version"),
    (wire.encode_recording_offer(RecordingOffer("r-1", "C-1", "c", 1, 2, 3, "xyz")), "sha256"),
])
def test_bad_recording_messages_are_rejected(payload: bytes, message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.decode_recording_up(payload)


@given(st.binary(max_size=400))
def test_random_payloads_raise_only_wire_error(payload: bytes) -> None:
    for decode in (wire.decode_call_signal, wire.decode_call_quality, wire.decode_recording_up,
                   wire.decode_recording_progress):
        with contextlib.suppress(WireError):
            decode(payload)
