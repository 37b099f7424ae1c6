"""The contract between gateways and HQ: MQTT topic names, payload schemas, version and encoding.

This is the only gateway module (with its transport, `gateway.mqttlink`) that HQ imports.
Pure: no I/O. Every decode function raises `WireError` naming the field that was wrong.

Topics (all under the gateway's own prefix, so the broker ACL `clinic/%u/#` confines a gateway):

    clinic/{gateway_id}/up/data      gateway -> HQ  QoS 1      Batch of outbox entries (one lane)
    clinic/{gateway_id}/up/status    gateway -> HQ  QoS 1, retained; birth/heartbeat, and the
                                                    last will ("offline") set at connect
    clinic/{gateway_id}/down/ack     HQ -> gateway  QoS 1      Ack: seq ranges HQ has committed
    clinic/{gateway_id}/down/replay  HQ -> gateway  QoS 1, retained; Replay request: resend what HQ
                                                    confirmed from a seq on (after restoring its database)
    clinic/{gateway_id}/down/notice  HQ -> gateway  QoS 1      Notice: a message HQ keeps sending until the
                                                    gateway's receipt (an outbox event) reaches it

Batch payload: 1 version byte (`BATCH_VERSION`) + zlib-compressed JSON
    {"gw": str, "clinic": str, "lane": int, "sent_ms": int,
     "rows": [[seq, kind, metric, value, unit, time_ms, recv_ms, patient_id, device_id, extra], ...],
     "floor": int}
with kind one of "observation" | "alarm" | "waveform" | "gap" | "event", times as Unix milliseconds
(UTC), `time_ms` the source's own time and `recv_ms` the gateway's receive time, and `extra` null
or an object (alarm details, waveform samples, gap details). `floor` (optional, default 0): every seq
below it HQ has confirmed, or the quota dropped with a gap entry saying so; HQ keeps it as the point a
replay must start from if it loses its newest commits.
Status and ack payloads are plain JSON objects with a "v" version field.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

PROTOCOL_VERSION = 1
BATCH_VERSION = 1
TOPIC_ROOT = "clinic"
MAX_BATCH_BYTES = 256 * 1024


class WireError(ValueError):
    """A payload or topic does not follow this contract."""


class Lane(enum.IntEnum):
    """Outbox priority lanes, highest priority first (lower value drains first)."""

    ALARM = 0  # alarms and emergency signalling
    CONSULT = 1  # consultation events
    VITALS = 2  # live vitals
    BACKLOG = 3  # vitals older than the live window
    BULK = 4  # recordings, imaging


class GatewayState(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


# ---- topics -------------------------------------------------------------------------------
def data_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/up/data"


def status_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/up/status"


def ack_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/down/ack"


def replay_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/down/replay"


def notice_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/down/notice"


HQ_DATA_SUBSCRIPTION = f"$share/hq-ingest/{TOPIC_ROOT}/+/up/data"
HQ_STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/up/status"


def gateway_of_topic(topic: str) -> str:
    """The gateway id in a `clinic/{gateway_id}/...` topic."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != TOPIC_ROOT or not parts[1]:
        raise WireError(f"topic {topic!r} is not of the form {TOPIC_ROOT}/<gateway_id>/<up|down>/<kind>")
    return parts[1]


def valid_gateway_id(gateway_id: str) -> bool:
    return bool(gateway_id) and all(c.isalnum() or c in "-_." for c in gateway_id) and len(gateway_id) <= 64


# ---- batches ------------------------------------------------------------------------------
class WireRecord(NamedTuple):
    """One outbox entry on the wire. A NamedTuple, not a dataclass: HQ builds one per reading of the
    whole fleet, and a frozen dataclass's __init__ cost five times as much."""

    seq: int
    kind: str
    metric: str
    value: float | None
    unit: str | None
    time_ms: int
    recv_ms: int
    patient_id: str | None
    device_id: str
    extra: dict[str, Any] | None = None

    def row(self) -> list[Any]:
        return list(self)


KINDS = frozenset({"observation", "alarm", "waveform", "gap", "event"})


@dataclass(frozen=True, slots=True)
class Batch:
    gateway_id: str
    clinic_id: str
    lane: Lane
    sent_ms: int
    records: list[WireRecord] = field(default_factory=list)
    floor: int = 0  # every seq below it is confirmed by HQ (or dropped with a recorded gap)

    @property
    def first_seq(self) -> int:
        return self.records[0].seq

    @property
    def last_seq(self) -> int:
        return self.records[-1].seq


def encode_batch(batch: Batch) -> bytes:
    if not batch.records:
        raise WireError("a batch must hold at least one record")
    doc = {
        "gw": batch.gateway_id,
        "clinic": batch.clinic_id,
        "lane": int(batch.lane),
        "sent_ms": batch.sent_ms,
        "rows": [r.row() for r in batch.records],
        "floor": batch.floor,
    }
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    return bytes([BATCH_VERSION]) + zlib.compress(body, 1)


def decode_batch(payload: bytes) -> Batch:
    if not payload:
        raise WireError("empty batch payload")
    if payload[0] != BATCH_VERSION:
        raise WireError(f"batch version {payload[0]} not supported; expected {BATCH_VERSION}")
    try:
        body = zlib.decompressobj().decompress(payload[1:], 64 * MAX_BATCH_BYTES)
        doc = json.loads(body)
    except (zlib.error, ValueError) as exc:
        raise WireError(f"batch body is not zlib-compressed JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise WireError("batch body must be a JSON object")
    gw = _field(doc, "gw", str)
    clinic = _field(doc, "clinic", str)
    lane_value = _field(doc, "lane", int)
    try:
        lane = Lane(lane_value)
    except ValueError as exc:
        raise WireError(f"batch field 'lane' = {lane_value} is not a known lane (0-4)") from exc
    sent_ms = _field(doc, "sent_ms", int)
    rows = _field(doc, "rows", list)
    if not rows:
        raise WireError("batch field 'rows' is empty; expected at least one record")
    records = [_decode_row_fast(row) or _decode_row(i, row) for i, row in enumerate(rows)]
    for prev, cur in itertools.pairwise(records):
        if cur.seq <= prev.seq:
            raise WireError(f"batch rows not in increasing seq order at seq {cur.seq}")
    floor = doc.get("floor", 0)
    if not _is_int(floor) or floor < 0:
        raise WireError(f"batch field 'floor' = {floor!r}; expected a non-negative integer (a seq)")
    return Batch(gw, clinic, lane, sent_ms, records, floor)


_NUMBER_TYPES = (int, float)


def _decode_row_fast(row: Any) -> WireRecord | None:
    """The record if the row is valid, else None (then `_decode_row` says what is wrong).

    HQ decodes every reading of the fleet: exact `type() is` checks (which also keep bools out) in one
    expression; about half the cost of the field-by-field checks with their messages.
    """
    if type(row) is not list or len(row) != 10:
        return None
    seq, kind, metric, value, unit, time_ms, recv_ms, patient_id, device_id, extra = row
    if not (type(seq) is int and seq >= 1 and kind in KINDS and type(metric) is str and metric
            and (value is None or (type(value) in _NUMBER_TYPES and math.isfinite(value)))
            and (unit is None or type(unit) is str) and type(time_ms) is int and type(recv_ms) is int
            and (patient_id is None or type(patient_id) is str) and type(device_id) is str
            and (extra is None or type(extra) is dict)):
        return None
    if type(value) is int:
        row = [*row]
        row[3] = float(value)
    return WireRecord._make(row)


def _decode_row(index: int, row: Any) -> WireRecord:
    where = f"batch row {index}"
    if not isinstance(row, list) or len(row) != 10:
        raise WireError(f"{where}: expected a list of 10 fields, got {type(row).__name__}")
    seq, kind, metric, value, unit, time_ms, recv_ms, patient_id, device_id, extra = row
    if not isinstance(seq, int) or seq < 1:
        raise WireError(f"{where}: seq {seq!r} is not a positive integer")
    if kind not in KINDS:
        raise WireError(f"{where}: kind {kind!r} is not one of {sorted(KINDS)}")
    if not isinstance(metric, str) or not metric:
        raise WireError(f"{where}: metric must be a non-empty string")
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise WireError(f"{where}: value {value!r} is not a finite number or null")
    if unit is not None and not isinstance(unit, str):
        raise WireError(f"{where}: unit must be a string or null")
    for name, t in (("time_ms", time_ms), ("recv_ms", recv_ms)):
        if not isinstance(t, int) or isinstance(t, bool):
            raise WireError(f"{where}: {name} {t!r} is not an integer (Unix milliseconds)")
    if patient_id is not None and not isinstance(patient_id, str):
        raise WireError(f"{where}: patient_id must be a string or null")
    if not isinstance(device_id, str):
        raise WireError(f"{where}: device_id must be a string")
    if extra is not None and not isinstance(extra, dict):
        raise WireError(f"{where}: extra must be an object or null")
    return WireRecord(seq, kind, metric, None if value is None else float(value), unit, time_ms, recv_ms,
                      patient_id, device_id, extra)


# ---- acks ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ack:
    """HQ committed these ranges (inclusive, per lane). `committed_seq` is the highest seq HQ holds."""

    ranges: list[tuple[Lane, int, int]]
    committed_seq: int
    hq_ms: int


def encode_ack(ack: Ack) -> bytes:
    doc = {"v": PROTOCOL_VERSION, "ranges": [[int(lane), a, b] for lane, a, b in ack.ranges],
           "committed_seq": ack.committed_seq, "hq_ms": ack.hq_ms}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_ack(payload: bytes) -> Ack:
    doc = _json_object(payload, "ack")
    ranges_raw = _field(doc, "ranges", list)
    ranges: list[tuple[Lane, int, int]] = []
    for item in ranges_raw:
        if (not isinstance(item, list) or len(item) != 3
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)):
            raise WireError(f"ack range {item!r} is not [lane, first_seq, last_seq]")
        lane_value, first, last = item
        try:
            lane = Lane(lane_value)
        except ValueError as exc:
            raise WireError(f"ack range lane {lane_value} is not a known lane") from exc
        if first > last:
            raise WireError(f"ack range {item!r} has first_seq > last_seq")
        ranges.append((lane, first, last))
    return Ack(ranges, _field(doc, "committed_seq", int), _field(doc, "hq_ms", int))


# ---- replay requests ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Replay:
    """HQ asks a gateway to send again every entry from `from_seq` on that it still keeps, confirmed or
    not. Retained, so a gateway offline at the time gets it when it connects; `request_id` lets the
    gateway carry out each request once."""

    request_id: str
    from_seq: int
    hq_ms: int


def encode_replay(replay: Replay) -> bytes:
    doc = {"v": PROTOCOL_VERSION, "request_id": replay.request_id, "from_seq": replay.from_seq,
           "hq_ms": replay.hq_ms}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_replay(payload: bytes) -> Replay:
    doc = _json_object(payload, "replay")
    request_id = _field(doc, "request_id", str)
    if not request_id or len(request_id) > 100:
        raise WireError("replay field 'request_id' must be 1-100 characters")
    from_seq = _field(doc, "from_seq", int)
    if from_seq < 0:
        raise WireError(f"replay field 'from_seq' = {from_seq}; expected a non-negative seq")
    return Replay(request_id, from_seq, _field(doc, "hq_ms", int))


# ---- notices (HQ -> gateway, durable) and their receipts ------------------------------------
RECEIPT_METRIC = "DOWNLINK_RECEIPT"  # the outbox event (consultation lane) that confirms a notice
# A patient checked in at the clinic's local screen (consultation lane; body: gateway.checkin_form.Checkin), and
# HQ's notice back saying which HQ patient it became.
PATIENT_CHECKIN_METRIC = "PATIENT_CHECKIN"
CHECKIN_RESULT_NOTICE = "checkin_result"
NOTICE_OUTCOMES = ("stored", "applied", "rejected")


@dataclass(frozen=True, slots=True)
class Notice:
    """A confirmation, reminder, consultation update, report or configuration for the clinic. `id` is HQ's
    and unique: a gateway stores each once, however often it arrives, and confirms it with a receipt."""

    id: int
    kind: str
    body: dict[str, Any]
    hq_ms: int


def encode_notice(notice: Notice) -> bytes:
    doc = {"v": PROTOCOL_VERSION, "id": notice.id, "kind": notice.kind, "body": notice.body, "hq_ms": notice.hq_ms}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_notice(payload: bytes) -> Notice:
    doc = _json_object(payload, "notice")
    notice_id = _field(doc, "id", int)
    if notice_id < 1:
        raise WireError(f"notice field 'id' = {notice_id}; expected a positive integer")
    kind = _field(doc, "kind", str)
    if not kind or len(kind) > 40:
        raise WireError("notice field 'kind' must be 1-40 characters")
    return Notice(notice_id, kind, _field(doc, "body", dict), _field(doc, "hq_ms", int))


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the gateway did with a notice: stored it (nothing more to do), applied it, or rejected it (why)."""

    notice_id: int
    kind: str
    outcome: str
    detail: str | None = None

    def extra(self) -> dict[str, Any]:
        return {"id": self.notice_id, "kind": self.kind, "outcome": self.outcome, "detail": self.detail}


def receipt_from_extra(extra: Any) -> Receipt:
    if not isinstance(extra, dict):
        raise WireError("receipt: extra must be an object")
    notice_id, kind, outcome, detail = (extra.get(k) for k in ("id", "kind", "outcome", "detail"))
    if not isinstance(notice_id, int) or isinstance(notice_id, bool) or notice_id < 1:
        raise WireError(f"receipt field 'id' = {notice_id!r}; expected a positive integer")
    if not isinstance(kind, str):
        raise WireError("receipt field 'kind' must be a string")
    if outcome not in NOTICE_OUTCOMES:
        raise WireError(f"receipt field 'outcome' = {outcome!r}; expected one of {', '.join(NOTICE_OUTCOMES)}")
    if detail is not None and not isinstance(detail, str):
        raise WireError("receipt field 'detail' must be a string or null")
    return Receipt(notice_id, kind, outcome, detail)


# ---- status (birth, heartbeat, last will) -------------------------------------------------
@dataclass(frozen=True, slots=True)
class LaneBacklog:
    count: int
    oldest_ms: int | None


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str
    protocol: str
    source: str
    state: str  # "ok" | "silent" | "disconnected"
    last_ms: int | None


@dataclass(frozen=True, slots=True)
class Status:
    state: GatewayState
    clinic_id: str
    time_ms: int
    software: str = ""
    started_ms: int | None = None
    backlog: dict[Lane, LaneBacklog] = field(default_factory=dict)
    devices: list[DeviceStatus] = field(default_factory=list)
    drain_rate_per_s: float | None = None  # entries HQ confirmed per second, recent average
    config_version: int = 0  # version of the HQ-managed settings in effect (0: the local TOML file alone)

    @property
    def backlog_total(self) -> int:
        return sum(b.count for b in self.backlog.values())


def encode_status(status: Status) -> bytes:
    doc: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "state": str(status.state),
        "clinic": status.clinic_id,
        "time_ms": status.time_ms,
        "software": status.software,
        "started_ms": status.started_ms,
        "backlog": {lane.name.lower(): [b.count, b.oldest_ms] for lane, b in status.backlog.items()},
        "devices": [[d.device_id, d.protocol, d.source, d.state, d.last_ms] for d in status.devices],
    }
    if status.drain_rate_per_s is not None:
        doc["drain"] = round(status.drain_rate_per_s, 1)
    if status.config_version:
        doc["config"] = status.config_version
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_status(payload: bytes) -> Status:
    doc = _json_object(payload, "status")
    state_value = _field(doc, "state", str)
    try:
        state = GatewayState(state_value)
    except ValueError as exc:
        raise WireError(f"status field 'state' = {state_value!r}; expected 'online' or 'offline'") from exc
    backlog_doc = doc.get("backlog") or {}
    if not isinstance(backlog_doc, dict):
        raise WireError("status field 'backlog' must be an object of lane name -> [count, oldest_ms]")
    backlog: dict[Lane, LaneBacklog] = {}
    for name, pair in backlog_doc.items():
        try:
            lane = Lane[name.upper()]
        except KeyError as exc:
            raise WireError(f"status backlog lane {name!r} is not a known lane") from exc
        if (not isinstance(pair, list) or len(pair) != 2 or not _is_int(pair[0])
                or not (pair[1] is None or _is_int(pair[1]))):
            raise WireError(f"status backlog for {name!r} must be [count, oldest_ms or null]")
        backlog[lane] = LaneBacklog(pair[0], pair[1])
    devices_doc = doc.get("devices") or []
    if not isinstance(devices_doc, list):
        raise WireError("status field 'devices' must be a list")
    devices = []
    for d in devices_doc:
        if (not isinstance(d, list) or len(d) != 5 or not all(isinstance(x, str) for x in d[:4])
                or not (d[4] is None or _is_int(d[4]))):
            raise WireError(f"status device entry {d!r} must be [id, protocol, source, state, last_ms or null]")
        devices.append(DeviceStatus(d[0], d[1], d[2], d[3], d[4]))
    started = doc.get("started_ms")
    software = doc.get("software", "")
    drain = doc.get("drain")
    if drain is not None and (isinstance(drain, bool) or not isinstance(drain, int | float) or drain < 0
                              or not math.isfinite(drain)):
        raise WireError(f"status field 'drain' = {drain!r}; expected a non-negative number (entries/s)")
    config_version = doc.get("config", 0)
    if not _is_int(config_version) or config_version < 0:
        raise WireError(f"status field 'config' = {config_version!r}; expected the settings version (an integer >= 0)")
    return Status(state, _field(doc, "clinic", str), _field(doc, "time_ms", int),
                  software if isinstance(software, str) else "", started if _is_int(started) else None,
                  backlog, devices, None if drain is None else float(drain), config_version)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---- helpers ------------------------------------------------------------------------------
def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise WireError(f"{what} payload is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise WireError(f"{what} payload must be a JSON object")
    version = doc.get("v")
    if version != PROTOCOL_VERSION:
        raise WireError(f"{what} payload version {version!r} not supported; expected {PROTOCOL_VERSION}")
    return doc


def _field(doc: dict[str, Any], name: str, typ: type) -> Any:
    if name not in doc:
        raise WireError(f"missing field {name!r}")
    value = doc[name]
    if (typ is int and isinstance(value, bool)) or not isinstance(value, typ):
        raise WireError(f"field {name!r} = {value!r} is not of type {typ.__name__}")
    return value
