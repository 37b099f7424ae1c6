"""The gateway's configuration: one TOML file, validated at start (see `gateway.tomlconfig`).

Every setting has a documented default; `python -m gateway --check-config` validates a file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.managed_settings import check_heartbeat_s, check_live_window_s, check_silent_after_s
from gateway.mqttlink import BrokerSection
from gateway.replication import ReplicationSection
from gateway.wire import valid_gateway_id


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

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.gateway.data_dir / "outbox.db"

    def __post_init__(self) -> None:
        ids = [d.device_id for d in self.serial] + [t.device_id for t in self.tcp]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"device ids must be unique; repeated: {', '.join(dupes)}")
