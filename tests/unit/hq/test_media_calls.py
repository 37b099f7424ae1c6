"""HQ's call pieces without I/O: TURN REST credentials (as coturn checks them), the ICE servers handed out,
the slot layout of a participant's screen, and the [calls] / [media] settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from gateway import tomlconfig
from gateway.config import GatewayConfig, MediaSection
from gateway.wire import SlotRole
from hq.calls import ice_servers, participant_slots, turn_credentials
from hq.config import CallsSection, HqConfig


def test_turn_credentials_follow_the_turn_rest_api() -> None:
    username, credential = turn_credentials("s3cret", "p.peer-1", now_s=1_700_000_000, ttl_s=3600)
    assert username == "1700003600:p.peer-1"
    expected = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()).decode()
    assert credential == expected


def test_ice_servers_have_stun_and_a_turn_credential_each() -> None:
    calls = CallsSection(stun_urls=["stun:turn.example.org:3478"], turn_urls=["turn:turn.example.org:3478"],
                         turn_secret_file=Path("/unused"))
    servers = ice_servers(calls, "secret", "gw.gw-1", 100)
    assert servers[0].urls == ("stun:turn.example.org:3478",) and servers[0].username is None
    assert servers[1].urls == ("turn:turn.example.org:3478",) and servers[1].username == f"{100 + 43200}:gw.gw-1"
    assert ice_servers(CallsSection(), None, "x", 1) == ()


def test_a_participants_layout() -> None:
    slots = participant_slots(CallsSection(camera_slots=2, party_slots=3))
    assert slots[:5] == (SlotRole.CAMERA, SlotRole.CAMERA, SlotRole.CLINIC_AUDIO, SlotRole.SEND_AUDIO,
                         SlotRole.SEND_VIDEO)
    assert slots[5:] == (SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO) * 3


@pytest.mark.parametrize(("text", "message"), [
    ('[calls]\nturn_urls = ["turn:t:3478"]\n', "turn_secret_file"),
    ('[calls]\nrelay_only = true\n', "relay_only needs turn_urls"),
    ('[calls]\nstun_urls = ["http://x"]\n', "stun_urls"),
    ('[calls]\ncamera_slots = 0\n', "camera_slots"),
    ('[calls]\nbogus = 1\n', "unknown key"),
])
def test_bad_calls_settings_are_explained(text: str, message: str) -> None:
    with pytest.raises(tomlconfig.ConfigError, match=message):
        tomlconfig.loads(text, HqConfig, "hq.toml")


@pytest.mark.parametrize(("text", "message"), [
    ("[media]\nlow_tier_kbps = 2000\nvideo_kbps = 1000\n", "low_tier_kbps"),
    ("[media]\nmax_remote_parties = 0\n", "max_remote_parties"),
    ("[media]\nupload_chunk_bytes = 10\n", "upload_chunk_bytes"),
    ('[[camera]]\nid = "a"\nurl = "rtsp://x/y"\n[[camera]]\nid = "a"\nurl = "rtsp://x/z"\n', "repeated: a"),
    ('[[camera]]\nid = "a b"\nurl = "rtsp://x/y"\n', "camera.0"),
])
def test_bad_media_settings_are_explained(text: str, message: str) -> None:
    with pytest.raises(tomlconfig.ConfigError, match=message):
        tomlconfig.loads(text, GatewayConfig, "gateway.toml")


def test_media_defaults_are_sane() -> None:
    media = MediaSection()
    assert media.low_tier_kbps < media.video_kbps and media.max_remote_parties == 3
    config = tomlconfig.loads('[gateway]\ndata_dir = "/d"\n[[camera]]\nid = "room"\nmdns_name = "Room"\n',
                              GatewayConfig, "gateway.toml")
    assert config.recordings_dir == Path("/d/recordings") and str(config.camera[0].kind) == "rtsp"
