"""The gateway's configuration: one TOML file, validated at start (see `gateway.tomlconfig`).

Every setting has a documented default; `python -m gateway --check-config` validates a file.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.managed_settings import check_heartbeat_s, check_live_window_s, check_silent_after_s
from gateway.mqttlink import BrokerSection
from gateway.replication import ReplicationSection
from gateway.wire import valid_gateway_id, valid_id


class Protocol(enum.StrEnum):
    HL7 = "hl7"
    MASIMO = "masimo"


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


def check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {name!r} is not a known IANA zone (e.g. 'Asia/Shanghai', 'UTC')") from None


@dataclass(frozen=True)
class GatewaySection:
    id: str = field(default="gateway-1", metadata=_doc(
        "This gateway's id: unique in the fleet, letters, digits, '-', '_', '.'; the MQTT client id and "
        "topic prefix (clinic/<id>/...)."))
    clinic_id: str = field(default="clinic-1", metadata=_doc("The clinic this gateway belongs to."))
    data_dir: Path = field(default=Path("/var/lib/clinic-gateway"), metadata=_doc(
        "Where the outbox database lives."))
    timezone: str = field(default="UTC", metadata=_doc(
        "Default time zone of device clocks, for device times without a UTC offset."))

    def __post_init__(self) -> None:
        if not valid_gateway_id(self.id):
            raise ValueError(f"id {self.id!r} must be 1-64 letters, digits, '-', '_' or '.'")
        if not valid_gateway_id(self.clinic_id):
            raise ValueError(f"clinic_id {self.clinic_id!r} must be 1-64 letters, digits, '-', '_' or '.'")
        check_zone(self.timezone)


@dataclass(frozen=True)
class OutboxSection:
    path: Path | None = field(default=None, metadata=_doc(
        "Outbox SQLite file; default <gateway.data_dir>/outbox.db."))
    batch_max_records: int = field(default=500, metadata=_doc("Most readings in one MQTT message."))
    max_inflight_batches: int = field(default=32, metadata=_doc(
        "Batches sent but not yet confirmed by HQ, at most: the window that keeps a backlog draining across "
        "a long round trip (32 x 500 readings cover ~1 s of HQ commit time plus a 100 ms WAN)."))
    ack_timeout_s: float = field(default=15.0, metadata=_doc(
        "Resend a batch HQ has not confirmed within this time."))
    quota_bytes: int = field(default=8 * 1024**3, metadata=_doc(
        "Most disk the outbox may use. Beyond it the oldest entries of the lowest lanes (bulk, vitals "
        "backlog, live vitals) are dropped and an explicit gap is sent to HQ; alarms and consultation "
        "events are never dropped. A week of 16 monitors (~200 readings/s) needs about 4 GiB."))
    live_window_s: float = field(default=60.0, metadata=_doc(
        "Vitals not sent within this time move to the backlog lane: after an outage, fresh vitals go first "
        "(at least 5; HQ may manage it)."))
    retain_sent_h: float = field(default=24.0, metadata=_doc(
        "Hours an entry HQ has confirmed is kept, so HQ can ask for a replay after restoring its database "
        "from a backup. Kept entries count against quota_bytes and are the first to go when it is reached; "
        "0 deletes entries as soon as HQ confirms them."))

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max_records <= 20000:
            raise ValueError(f"batch_max_records {self.batch_max_records} must be 1-20000")
        if not 1 <= self.max_inflight_batches <= 256:
            raise ValueError(f"max_inflight_batches {self.max_inflight_batches} must be 1-256")
        if self.ack_timeout_s <= 0:
            raise ValueError("ack_timeout_s must be positive")
        if self.quota_bytes < 64 * 1024:
            raise ValueError(f"quota_bytes {self.quota_bytes} must be at least 65536 (64 KiB)")
        check_live_window_s(self.live_window_s)
        if not 0 <= self.retain_sent_h <= 24 * 31:
            raise ValueError(f"retain_sent_h {self.retain_sent_h} must be 0-744 (31 days)")


@dataclass(frozen=True)
class StatusSection:
    heartbeat_s: float = field(default=10.0, metadata=_doc(
        "How often the gateway publishes its status (backlog, devices) to HQ (1-3600; HQ may manage it)."))

    def __post_init__(self) -> None:
        check_heartbeat_s(self.heartbeat_s)


@dataclass(frozen=True)
class HttpSection:
    host: str = field(default="127.0.0.1", metadata=_doc("Address of the local API (/healthz, /metrics)."))
    port: int = field(default=8081, metadata=_doc("Port of the local API; 0 disables it."))


@dataclass(frozen=True)
class EnrolmentSection:
    hq_url: str | None = field(default=None, metadata=_doc(
        "HQ's address for `clinic-gateway enrol`, e.g. 'https://hq.example.org': the one-time token travels to it, "
        "so use HTTPS outside a test bench."))
    ca_file: Path | None = field(default=None, metadata=_doc(
        "CA bundle to verify hq_url's HTTPS certificate; unset: the system's trusted CAs."))
    timeout_s: float = field(default=30.0, metadata=_doc("How long `enrol` waits for HQ's answer."))
    renew_warning_days: float = field(default=30.0, metadata=_doc(
        "Status, /healthz and /metrics warn when the certificate in mqtt.cert_file expires within this many days "
        "(renew: `clinic-gateway enrol --renew` with a new token)."))

    def __post_init__(self) -> None:
        if self.hq_url is not None and not self.hq_url.startswith(("https://", "http://")):
            raise ValueError(f"hq_url {self.hq_url!r} must start with https:// (or http:// on a test bench)")
        if not 0 < self.timeout_s <= 600:
            raise ValueError(f"timeout_s {self.timeout_s} must be more than 0 and at most 600")
        if not 0 <= self.renew_warning_days <= 365:
            raise ValueError(f"renew_warning_days {self.renew_warning_days} must be 0-365")


@dataclass(frozen=True)
class SerialDevice:
    port: str = field(metadata=_doc("Serial device path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/..."))
    protocol: Protocol = field(metadata=_doc("Device protocol: 'hl7' (PCD-01/PCD-04) or 'masimo'."))
    device_id: str = field(metadata=_doc("Id of the device, as shown at HQ."))
    baudrate: int = field(default=9600, metadata=_doc("Line speed."))
    timezone: str | None = field(default=None, metadata=_doc(
        "Time zone of this device's clock; default gateway.timezone."))
    silent_after_s: float = field(default=15.0, metadata=_doc(
        "Report the device silent after this long without a byte (at most a day; HQ may manage it)."))
    send_acks: bool = field(default=False, metadata=_doc("Write HL7 ACKs back to the device."))
    patient_id: str | None = field(default=None, metadata=_doc(
        "Patient linked to this device (bedside assignment), used when the device's data names none."))

    def __post_init__(self) -> None:
        if self.timezone is not None:
            check_zone(self.timezone)
        check_silent_after_s(self.silent_after_s)


@dataclass(frozen=True)
class TcpListener:
    port: int = field(metadata=_doc("TCP port to listen on for MLLP (HL7) connections, e.g. 2575."))
    device_id: str = field(metadata=_doc(
        "Id prefix of devices connecting here; the peer address is appended (id@address)."))
    host: str = field(default="0.0.0.0", metadata=_doc("Address to listen on."))
    protocol: Protocol = field(default=Protocol.HL7, metadata=_doc("Protocol spoken by connecting devices."))
    timezone: str | None = field(default=None, metadata=_doc("Device clock time zone; default gateway.timezone."))

    def __post_init__(self) -> None:
        if not 0 <= self.port < 65536:
            raise ValueError(f"port {self.port} must be 0-65535")
        if self.timezone is not None:
            check_zone(self.timezone)


class CameraKind(enum.StrEnum):
    RTSP = "rtsp"  # an IP camera
    V4L2 = "v4l2"  # a USB camera (Video4Linux)
    FILE = "file"  # a recorded file, played in a loop (demonstrations, tests)


class RtspTransport(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"


def camera_kind(url: str) -> CameraKind:
    if url.startswith(("rtsp://", "rtsps://")):
        return CameraKind.RTSP
    if url.startswith("/dev/"):
        return CameraKind.V4L2
    return CameraKind.FILE


@dataclass(frozen=True)
class CameraConfig:
    id: str = field(metadata=_doc("Id of the camera, as shown at HQ and on the call screens (like a device id)."))
    url: str | None = field(default=None, metadata=_doc(
        "Where the video comes from: 'rtsp://HOST:PORT/PATH' (an IP camera; no credentials here), "
        "'/dev/videoN' (a USB camera) or a file path / 'file:///PATH' (played in a loop). Unset: found on the "
        "LAN by mDNS under mdns_name."))
    mdns_name: str | None = field(default=None, metadata=_doc(
        "Instance name of the camera's _rtsp._tcp mDNS service (e.g. 'Exam room camera'): its address is "
        "looked up on the LAN, so a camera that changes address is still found."))
    rtsp_path: str | None = field(default=None, metadata=_doc(
        "Path of the stream on a camera found by mDNS; default the 'path' of its TXT record, else '/'."))
    label: str = field(default="", metadata=_doc("Name shown on the call screens; default the id."))
    substream_url: str | None = field(default=None, metadata=_doc(
        "RTSP URL of the camera's low-resolution substream, relayed to viewers on weak links; unset: the "
        "gateway encodes a low-rate copy of the main stream (once, for all such viewers) when one needs it."))
    username_file: Path | None = field(default=None, metadata=_doc("File holding the camera's RTSP user name."))
    password_file: Path | None = field(default=None, metadata=_doc("File holding the camera's RTSP password."))
    rtsp_transport: RtspTransport = field(default=RtspTransport.TCP, metadata=_doc(
        "RTP over the RTSP connection ('tcp', no loss on the LAN) or over 'udp'."))
    input_format: str | None = field(default=None, metadata=_doc(
        "USB cameras: the format to ask for, e.g. 'h264' (relayed as it is), 'mjpeg' or 'yuyv422' (encoded "
        "once by the gateway)."))
    video_size: str | None = field(default=None, metadata=_doc("USB cameras: e.g. '1280x720'."))
    framerate: int | None = field(default=None, metadata=_doc("USB cameras: frames per second to ask for."))
    audio: bool = field(default=True, metadata=_doc(
        "Use the camera's microphone (Opus, G.711 or AAC) as the clinic's voice while no screen on the LAN "
        "sends one."))
    stall_timeout_s: float = field(default=5.0, metadata=_doc(
        "No video for this long: the camera is reported disconnected and opened again."))

    @property
    def kind(self) -> CameraKind:
        return camera_kind(self.url or "rtsp://")

    @property
    def display_name(self) -> str:
        return self.label or self.id

    def __post_init__(self) -> None:
        if not valid_id(self.id):
            raise ValueError(f"id {self.id!r} must be 1-64 letters, digits, '-', '_' or '.'")
        if (self.url is None) == (self.mdns_name is None):
            raise ValueError(f"camera {self.id!r}: set exactly one of url (a fixed address) and mdns_name "
                             "(found on the LAN)")
        for url in (self.url, self.substream_url):
            if url is not None and "://" in url and urlsplit(url).username is not None:
                raise ValueError(f"camera {self.id!r}: put no credentials in a URL; use username_file and "
                                 "password_file (secrets come from files)")
        if self.substream_url is not None and not self.substream_url.startswith(("rtsp://", "rtsps://")):
            raise ValueError(f"camera {self.id!r}: substream_url {self.substream_url!r} must be an rtsp:// URL")
        if (self.username_file is None) != (self.password_file is None):
            raise ValueError(f"camera {self.id!r}: set both username_file and password_file, or neither")
        if self.stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s must be positive")
        if self.framerate is not None and not 1 <= self.framerate <= 120:
            raise ValueError(f"framerate {self.framerate} must be 1-120")
        if self.video_size is not None and not re.fullmatch(r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}", self.video_size):
            raise ValueError(f"video_size {self.video_size!r} must look like '1280x720'")

    def secret_files(self) -> list[Path]:
        return [p for p in (self.username_file, self.password_file) if p is not None]


@dataclass(frozen=True)
class MediaSection:
    enabled: bool = field(default=True, metadata=_doc(
        "Serve live video consultations (cameras, WebRTC relay, recordings); false: no media at all."))
    ice_host_addresses: list[str] = field(default_factory=list, metadata=_doc(
        "Local addresses offered as ICE host candidates, e.g. ['192.168.1.20']; empty: every address but "
        "loopback. STUN and TURN servers come from HQ with each call."))
    max_remote_parties: int = field(default=3, metadata=_doc(
        "Remote participants (experts, coordinators) in one call at most; with the clinic, 4 parties."))
    max_viewers_per_camera: int = field(default=8, metadata=_doc(
        "Participants one camera is relayed to at most (a bound on memory and uplink)."))
    stats_interval_s: float = field(default=5.0, metadata=_doc(
        "How often call quality (RTT, loss, jitter, frame rate, bitrate per stream) is sent to HQ."))
    video_kbps: int = field(default=1200, metadata=_doc(
        "Bitrate of video the gateway must encode itself (a USB camera without H.264; a participant's camera "
        "relayed to the others): encoded once per source, never once per viewer."))
    low_tier_kbps: int = field(default=350, metadata=_doc(
        "Bitrate of a camera's low-rate copy, for viewers whose link cannot carry the main stream."))
    low_tier_height: int = field(default=360, metadata=_doc("Picture height of the low-rate copy."))
    low_tier_fps: int = field(default=15, metadata=_doc("Frame rate of the low-rate copy."))
    tier_probe_s: float = field(default=10.0, metadata=_doc(
        "A viewer moved to a lower video tier tries the next one up after this long on a clean link; the wait "
        "doubles after each try that fails (up to 12 times this)."))
    audio_kbps: int = field(default=32, metadata=_doc(
        "Opus bitrate of the voices the gateway relays (with in-band FEC); voice goes on when video is cut."))
    call_idle_s: float = field(default=20.0, metadata=_doc(
        "A call whose remote participants all left this long ago ends, and its recording is closed."))
    recordings_dir: Path | None = field(default=None, metadata=_doc(
        "Where recordings wait for their upload; default <gateway.data_dir>/recordings."))
    recordings_quota_bytes: int = field(default=20 * 1024**3, metadata=_doc(
        "Most disk recordings may use. Uploaded recordings are deleted; when the rest reach this, no new "
        "recording starts (the call goes on, and the screens and HQ say it is not recorded)."))
    upload_kbps: int = field(default=0, metadata=_doc(
        "Most bandwidth a recording upload takes (0: no limit). Uploads wait while other outbox lanes hold "
        "entries, and during calls unless upload_during_calls."))
    upload_during_calls: bool = field(default=False, metadata=_doc(
        "Upload recordings while a call is live (it competes with the call's media for the uplink)."))
    upload_chunk_bytes: int = field(default=256 * 1024, metadata=_doc("Bytes per upload message (MQTT)."))
    discover_cameras: bool = field(default=False, metadata=_doc(
        "Also use every camera announcing an _rtsp._tcp service on the LAN (mDNS), not only [[camera]] ones."))
    discovery_interfaces: list[str] = field(default_factory=list, metadata=_doc(
        "Addresses mDNS listens on, e.g. ['192.168.1.20']; empty: every interface."))

    def __post_init__(self) -> None:
        if not 1 <= self.max_remote_parties <= 8:
            raise ValueError(f"max_remote_parties {self.max_remote_parties} must be 1-8")
        if not 1 <= self.max_viewers_per_camera <= 64:
            raise ValueError(f"max_viewers_per_camera {self.max_viewers_per_camera} must be 1-64")
        if not 1 <= self.stats_interval_s <= 60:
            raise ValueError(f"stats_interval_s {self.stats_interval_s} must be 1-60")
        for name, low, high in (("video_kbps", 100, 20000), ("low_tier_kbps", 50, 5000), ("audio_kbps", 8, 256),
                                ("low_tier_height", 90, 1080), ("low_tier_fps", 1, 60)):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name} {getattr(self, name)} must be {low}-{high}")
        if self.low_tier_kbps >= self.video_kbps:
            raise ValueError(f"low_tier_kbps {self.low_tier_kbps} must be below video_kbps {self.video_kbps}")
        if not 1 <= self.tier_probe_s <= 600:
            raise ValueError(f"tier_probe_s {self.tier_probe_s} must be 1-600")
        if self.call_idle_s <= 0:
            raise ValueError("call_idle_s must be positive")
        if self.recordings_quota_bytes < 64 * 1024**2:
            raise ValueError(f"recordings_quota_bytes {self.recordings_quota_bytes} must be at least 64 MiB")
        if self.upload_kbps < 0:
            raise ValueError("upload_kbps must be 0 (no limit) or positive")
        if not 16 * 1024 <= self.upload_chunk_bytes <= 1024 * 1024:
            raise ValueError(f"upload_chunk_bytes {self.upload_chunk_bytes} must be 16384-1048576")


@dataclass(frozen=True)
class GatewayConfig:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    mqtt: BrokerSection = field(default_factory=BrokerSection)
    outbox: OutboxSection = field(default_factory=OutboxSection)
    status: StatusSection = field(default_factory=StatusSection)
    http: HttpSection = field(default_factory=HttpSection)
    replication: ReplicationSection = field(default_factory=ReplicationSection)
    enrolment: EnrolmentSection = field(default_factory=EnrolmentSection)
    serial: list[SerialDevice] = field(default_factory=list, metadata=_doc("[[serial]] devices."))
    tcp: list[TcpListener] = field(default_factory=list, metadata=_doc("[[tcp]] MLLP listeners."))
    media: MediaSection = field(default_factory=MediaSection)
    camera: list[CameraConfig] = field(default_factory=list, metadata=_doc("[[camera]] cameras."))

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.gateway.data_dir / "outbox.db"

    @property
    def recordings_dir(self) -> Path:
        return self.media.recordings_dir or self.gateway.data_dir / "recordings"

    def __post_init__(self) -> None:
        ids = [d.device_id for d in self.serial] + [t.device_id for t in self.tcp] + [c.id for c in self.camera]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"device ids must be unique; repeated: {', '.join(dupes)} "
                             "(camera ids count as device ids)")
