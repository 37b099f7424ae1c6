"""The small pure pieces of the gateway's media: quality figures from counters, the recording's voice mixer,
how a camera is opened (and its credentials kept out of logs), cameras found by mDNS, recordings on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.config import CameraConfig
from gateway.media.camera import open_spec, redact, with_credentials
from gateway.media.discovery import FoundCamera, instance_name
from gateway.media.quality import Counters, Reported, stream_quality
from gateway.media.recorder import MIX_DELAY_SLOTS, SLOT_SAMPLES, Mixer
from gateway.media.recordings import RecordingFiles, file_sha256
from gateway.wire import StreamDirection


def test_quality_of_a_sent_stream_uses_the_receivers_reports() -> None:
    prev = Counters(10.0, packets=1000, bytes=1_000_000, frames=300, lost=5)
    cur = Counters(15.0, packets=1500, bytes=1_250_000, frames=450, lost=30)
    q = stream_quality("camera-0", "video", StreamDirection.OUT, prev, cur,
                       Reported(fraction_lost=0.04, jitter_ticks=900, rtt_s=0.12), 90_000, tier="low", source="Room")
    assert q.kbps == pytest.approx(400.0) and q.fps == pytest.approx(30.0)
    assert q.loss_pct == pytest.approx(4.0)  # the receiver's own last report, not our arithmetic
    assert q.jitter_ms == pytest.approx(10.0) and q.rtt_ms == pytest.approx(120.0)
    assert (q.tier, q.source) == ("low", "Room")


def test_quality_of_a_received_stream_counts_its_losses_and_knows_nothing_at_first() -> None:
    first = stream_quality("send-audio", "audio", StreamDirection.IN, None, Counters(1.0, 50, 4000, 0, 0),
                           Reported(jitter_ticks=480), 48_000)
    assert first.kbps is None and first.loss_pct is None and first.fps is None and first.jitter_ms == 10.0
    later = stream_quality("send-audio", "audio", StreamDirection.IN, Counters(1.0, 50, 4000, 0, 0),
                           Counters(3.0, 140, 12000, 0, 10), Reported(), 48_000)
    assert later.loss_pct == pytest.approx(10.0) and later.kbps == pytest.approx(32.0)


def tone(level: int, samples: int = SLOT_SAMPLES) -> np.ndarray:
    return np.full(samples * 2, level, dtype=np.int16)


def test_the_mixer_sums_voices_on_one_timeline_and_clips() -> None:
    mixer = Mixer(start_pts=48_000)
    mixer.add(48_000, tone(1000))
    mixer.add(48_000, tone(500))  # a second voice at the same time: summed
    mixer.add(48_000 + SLOT_SAMPLES // 2, tone(30_000))  # straddles two slots
    mixer.add(48_000 + SLOT_SAMPLES // 2, tone(30_000))
    assert mixer.ready(48_000 + SLOT_SAMPLES * MIX_DELAY_SLOTS) == []  # too recent to mix yet
    slots = mixer.ready(0, flush=True)
    assert len(slots) == 2
    assert slots[0][0, 0] == 1500 and slots[0][-1, 1] == 32767  # clipped, not wrapped
    assert slots[1][0, 0] == 32767 and slots[1][-1, 0] == 0  # and silence where nobody spoke
    mixer.add(48_000, tone(7))
    assert mixer.late == SLOT_SAMPLES  # what comes after its slot was mixed is counted, not mixed


def test_cameras_open_their_way_and_credentials_stay_out_of_logs() -> None:
    rtsp = open_spec(CameraConfig(id="c", url="rtsp://cam/x"), "rtsp://u:p%40ss@cam:554/x")
    assert rtsp.format == "rtsp" and rtsp.options["rtsp_transport"] == "tcp" and rtsp.passthrough
    usb = open_spec(CameraConfig(id="c", url="/dev/video0", input_format="mjpeg", video_size="1280x720"),
                    "/dev/video0")
    assert usb.format == "v4l2" and not usb.passthrough and usb.options == {"input_format": "mjpeg",
                                                                             "video_size": "1280x720"}
    assert open_spec(CameraConfig(id="c", url="/dev/video0", input_format="h264"), "/dev/video0").passthrough
    assert open_spec(CameraConfig(id="c", url="file:///m/a.ts"), "file:///m/a.ts").url == "/m/a.ts"
    url = with_credentials("rtsp://cam.lan:554/stream", "admin", "s3cr:et@")
    assert url == "rtsp://admin:s3cr%3Aet%40@cam.lan:554/stream" and redact(url) == "rtsp://cam.lan:554/stream"


@pytest.mark.parametrize(("fields", "message"), [
    ({"url": "rtsp://admin:pw@cam/x"}, "no credentials"),
    ({}, "exactly one of url"),
    ({"url": "rtsp://cam/x", "mdns_name": "Cam"}, "exactly one of url"),
    ({"url": "rtsp://cam/x", "username_file": "/u"}, "both username_file and password_file"),
    ({"url": "/dev/video0", "video_size": "big"}, "video_size"),
    ({"url": "rtsp://cam/x", "substream_url": "http://cam/low"}, "substream_url"),
])
def test_camera_configuration_is_checked(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CameraConfig(id="cam", **fields)  # type: ignore[arg-type]


def test_cameras_found_by_mdns() -> None:
    found = FoundCamera("Exam room", "192.168.1.30", 8554, "live/main")
    assert found.url() == "rtsp://192.168.1.30:8554/live/main"
    assert found.url("/sub") == "rtsp://192.168.1.30:8554/sub"
    assert FoundCamera("x", "fe80::1", 554, "/").url() == "rtsp://[fe80::1]:554/"
    assert instance_name("Exam room._rtsp._tcp.local.") == "Exam room"


def test_recordings_on_disk_are_finished_and_a_cut_short_one_is_kept(tmp_path: Path) -> None:
    files = RecordingFiles(tmp_path, 10**9)
    files.begin("r-1", "C-1", "clinic-a", 1000).write_bytes(b"first recording")
    manifest = files.finish("r-1", 5000)
    assert (manifest.size_bytes, manifest.ended_ms) == (15, 5000)
    assert manifest.sha256 == file_sha256(files.media("r-1"))
    files.begin("r-2", "C-2", "clinic-a", 2000).write_bytes(b"the gateway died while writing this")
    assert files.orphans() == ["r-2"] and [m.recording_id for m in files.pending()] == ["r-1"]
    finished = files.finish_orphans()
    assert [m.recording_id for m in finished] == ["r-2"] and finished[0].consultation_id == "C-2"
    assert [m.recording_id for m in files.pending()] == ["r-1", "r-2"] and files.orphans() == []
    assert json.loads((tmp_path / "r-2.json").read_text())["size_bytes"] == 35
    files.delete("r-1")
    assert not files.media("r-1").exists() and [m.recording_id for m in files.pending()] == ["r-2"]
    assert RecordingFiles(tmp_path, 10).has_room() is False
