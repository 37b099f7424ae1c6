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
    clinic/{gateway_id}/down/call    HQ -> gateway  QoS 1      Call signalling: a participant's offer (with the
                                                    ICE servers for the gateway), trickled candidates, bye
    clinic/{gateway_id}/up/call      gateway -> HQ  QoS 1      Call signalling: answer, candidates, bye, error
    clinic/{gateway_id}/up/callstats gateway -> HQ  QoS 0      Call quality per participant and stream (RTT,
                                                    loss, jitter, frame rate, bitrate) every few seconds
    clinic/{gateway_id}/up/recording gateway -> HQ  QoS 1      A recording: its offer (JSON), then its chunks
    clinic/{gateway_id}/down/recording HQ -> gateway QoS 1     How much of a recording HQ holds (resume point),
                                                    or that it is complete / corrupt

Batch payload: 1 version byte (`BATCH_VERSION`) + zlib-compressed JSON
    {"gw": str, "clinic": str, "lane": int, "sent_ms": int,
     "rows": [[seq, kind, metric, value, unit, time_ms, recv_ms, patient_id, device_id, extra], ...],
     "floor": int}
with kind one of "observation" | "alarm" | "waveform" | "gap" | "event", times as Unix milliseconds
(UTC), `time_ms` the source's own time and `recv_ms` the gateway's receive time, and `extra` null
or an object (alarm details, waveform samples, gap details). `floor` (optional, default 0): every seq
below it HQ has confirmed, or the quota dropped with a gap entry saying so; HQ keeps it as the point a
replay must start from if it loses its newest commits.
Status, ack, call and recording-progress payloads are plain JSON objects with a "v" version field; a
recording chunk is 1 version byte (`RECORDING_CHUNK_VERSION`), a 2-byte header length, a JSON header
{"id", "offset", "size"} and the bytes. Media itself never passes through MQTT or HQ: browsers and the
gateway exchange it directly over WebRTC.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import zlib
from collections.abc import Iterable
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


# ---- calls: signalling ---------------------------------------------------------------------
# Browsers talk to HQ only; HQ relays their offers and ICE candidates to the clinic's gateway and the gateway's
# answers back. Media then flows browser <-> gateway directly (STUN/TURN), never through HQ.
def call_down_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/down/call"


def call_up_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/up/call"


def callstats_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/up/callstats"


def recording_up_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/up/recording"


def recording_down_topic(gateway_id: str) -> str:
    return f"{TOPIC_ROOT}/{gateway_id}/down/recording"


# Not shared: every HQ worker must see every answer, since any of them may hold the browser's WebSocket (the
# others drop it); quality samples likewise go to every worker's live pages (their rows are stored idempotently).
HQ_CALL_SUBSCRIPTION = f"{TOPIC_ROOT}/+/up/call"
HQ_CALLSTATS_SUBSCRIPTION = f"{TOPIC_ROOT}/+/up/callstats"
HQ_RECORDING_SUBSCRIPTION = f"$share/hq-recordings/{TOPIC_ROOT}/+/up/recording"

MAX_SDP_BYTES = 64 * 1024
MAX_SLOTS = 32
MAX_ID_LENGTH = 64


def valid_id(text: object, max_length: int = MAX_ID_LENGTH) -> bool:
    """Letters, digits, '-', '_', '.'; what consultation, peer and recording ids may hold (they name files
    and topics)."""
    return (isinstance(text, str) and 0 < len(text) <= max_length
            and all(c.isascii() and (c.isalnum() or c in "-_.") for c in text))


class SignalType(enum.StrEnum):
    OFFER = "offer"  # HQ -> gateway: a participant's offer (and the ICE servers for the gateway's side)
    ANSWER = "answer"  # gateway -> HQ
    CANDIDATE = "candidate"  # both ways: a trickled ICE candidate (null: end of candidates)
    BYE = "bye"  # both ways: the participant left / the gateway ended its session
    ERROR = "error"  # gateway -> HQ: the offer could not be answered (reason says why)
    STATE = "state"  # gateway -> HQ: what the participant's slots show now, and whether the call is recorded


class SlotRole(enum.StrEnum):
    """What one m-line of a participant's offer carries, in offer order. The browser builds its transceivers
    from this list and the gateway answers them one by one, so neither side depends on the other's mids."""

    CAMERA = "camera"  # video, gateway -> participant: the clinic's cameras, in configuration order
    CLINIC_AUDIO = "clinic-audio"  # audio, gateway -> participant: the clinic's microphone
    SEND_AUDIO = "send-audio"  # audio, participant -> gateway: the participant's microphone
    SEND_VIDEO = "send-video"  # video, participant -> gateway: the participant's camera
    PARTY_AUDIO = "party-audio"  # audio, gateway -> participant: another remote party's voice
    PARTY_VIDEO = "party-video"  # video, gateway -> participant: another remote party's camera

    @property
    def kind(self) -> str:
        return "audio" if self in (SlotRole.CLINIC_AUDIO, SlotRole.SEND_AUDIO, SlotRole.PARTY_AUDIO) else "video"

    @property
    def gateway_sends(self) -> bool:
        return self not in (SlotRole.SEND_AUDIO, SlotRole.SEND_VIDEO)


NUMBERED_SLOTS = frozenset({SlotRole.CAMERA, SlotRole.PARTY_AUDIO, SlotRole.PARTY_VIDEO})


def slot_names(slots: Iterable[str]) -> list[str]:
    """Each slot's name in offer order, as both sides and the pages call them: the roles that repeat are numbered
    ("camera-0", "camera-1", "party-audio-0"), the others are their role ("clinic-audio")."""
    counts: dict[str, int] = {}
    names = []
    for role in map(str, slots):
        index = counts.get(role, 0)
        counts[role] = index + 1
        names.append(f"{role}-{index}" if role in NUMBERED_SLOTS else role)
    return names


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class IceCandidate:
    candidate: str  # the "candidate:..." attribute line, as the browser's RTCIceCandidate.candidate
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True, slots=True)
class Party:
    """Who a participant is, for labels on the other screens (never used to decide access: HQ did that)."""

    name: str
    role: str  # "expert", "coordinator", "admin", "clinic_staff", ...


@dataclass(frozen=True, slots=True)
class SlotSource:
    """What one of a participant's slots carries now, for its label on their screen."""

    slot: str  # e.g. "camera-0", "clinic-audio", "party-video-1"
    source: str | None  # a camera id, a participant's peer id; None: nothing (yet)
    label: str  # "Room camera", "Dr Wang"
    state: str | None = None  # a camera's state (ok, silent, disconnected) or a participant's connection


@dataclass(frozen=True, slots=True)
class CallState:
    slots: tuple[SlotSource, ...]
    recording: bool
    consent: bool
    note: str | None = None  # e.g. why the call is not recorded


@dataclass(frozen=True, slots=True)
class CallSignal:
    type: SignalType
    consultation_id: str  # the consultation's public id
    peer_id: str  # one participant's connection, made by HQ (or by the gateway for its LAN screens)
    time_ms: int
    sdp: str | None = None  # offer, answer
    slots: tuple[SlotRole, ...] = ()  # offer: what each m-line carries
    candidate: IceCandidate | None = None  # candidate; None: end of candidates
    ice_servers: tuple[IceServer, ...] = ()  # offer: STUN/TURN for the gateway's side (with credentials)
    relay_only: bool = False  # offer: the gateway uses TURN relay candidates only
    party: Party | None = None  # offer
    reason: str | None = None  # bye, error
    state: CallState | None = None  # state


def encode_call_signal(signal: CallSignal) -> bytes:
    doc: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": str(signal.type), "consultation": signal.consultation_id,
                           "peer": signal.peer_id, "time_ms": signal.time_ms}
    if signal.sdp is not None:
        doc["sdp"] = signal.sdp
    if signal.slots:
        doc["slots"] = [str(s) for s in signal.slots]
    if signal.type is SignalType.CANDIDATE:
        c = signal.candidate
        doc["candidate"] = None if c is None else {"candidate": c.candidate, "sdpMid": c.sdp_mid,
                                                   "sdpMLineIndex": c.sdp_mline_index}
    if signal.ice_servers:
        doc["ice_servers"] = [{"urls": list(s.urls), "username": s.username, "credential": s.credential}
                              for s in signal.ice_servers]
    if signal.relay_only:
        doc["relay_only"] = True
    if signal.party is not None:
        doc["party"] = {"name": signal.party.name, "role": signal.party.role}
    if signal.reason is not None:
        doc["reason"] = signal.reason
    if signal.state is not None:
        doc["state"] = call_state_json(signal.state)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def call_state_json(state: CallState) -> dict[str, Any]:
    """The state as JSON (also what HQ hands the participant's browser)."""
    return {"slots": [{"slot": s.slot, "source": s.source, "label": s.label, "state": s.state} for s in state.slots],
            "recording": state.recording, "consent": state.consent, "note": state.note}


def decode_call_signal(payload: bytes) -> CallSignal:
    doc = _json_object(payload, "call signal")
    type_value = _field(doc, "type", str)
    try:
        kind = SignalType(type_value)
    except ValueError:
        raise WireError(f"call signal field 'type' = {type_value!r}; expected one of "
                        f"{', '.join(t.value for t in SignalType)}") from None
    consultation = _field(doc, "consultation", str)
    peer = _field(doc, "peer", str)
    for name, value in (("consultation", consultation), ("peer", peer)):
        if not valid_id(value):
            raise WireError(f"call signal field {name!r} = {value!r}; expected 1-{MAX_ID_LENGTH} letters, digits, "
                            "'-', '_' or '.'")
    sdp = doc.get("sdp")
    if sdp is not None and (not isinstance(sdp, str) or len(sdp) > MAX_SDP_BYTES):
        raise WireError(f"call signal field 'sdp' must be a string of at most {MAX_SDP_BYTES} characters")
    if kind in (SignalType.OFFER, SignalType.ANSWER) and not sdp:
        raise WireError(f"a call {kind} needs its 'sdp'")
    slots = _decode_slots(doc.get("slots", []))
    party = None
    if kind is SignalType.OFFER:
        if not slots:
            raise WireError("a call offer needs 'slots': what each m-line of the offer carries")
        party = _decode_party(doc.get("party"))
    candidate = _decode_candidate(doc.get("candidate")) if kind is SignalType.CANDIDATE else None
    if kind is SignalType.CANDIDATE and "candidate" not in doc:
        raise WireError("a call candidate needs 'candidate' (null for the end of candidates)")
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise WireError("call signal field 'reason' must be a string")
    relay_only = doc.get("relay_only", False)
    if not isinstance(relay_only, bool):
        raise WireError("call signal field 'relay_only' must be true or false")
    state = _decode_call_state(doc.get("state")) if kind is SignalType.STATE else None
    return CallSignal(kind, consultation, peer, _field(doc, "time_ms", int), sdp, slots, candidate,
                      _decode_ice_servers(doc.get("ice_servers", [])), relay_only, party,
                      None if reason is None else reason[:500], state)


def _decode_call_state(raw: Any) -> CallState:
    if not isinstance(raw, dict) or not isinstance(raw.get("slots"), list) or len(raw["slots"]) > MAX_SLOTS:
        raise WireError("a call state needs 'state': {\"slots\": [...], \"recording\", \"consent\"}")
    slots = []
    for item in raw["slots"]:
        if (not isinstance(item, dict) or not isinstance(item.get("slot"), str)
                or not isinstance(item.get("label"), str)
                or not all(item.get(k) is None or isinstance(item[k], str) for k in ("source", "state"))):
            raise WireError(f"call state slot {item!r} must be {{\"slot\", \"source\", \"label\", \"state\"}}")
        slots.append(SlotSource(item["slot"], item.get("source"), item["label"][:200], item.get("state")))
    note = raw.get("note")
    return CallState(tuple(slots), _field(raw, "recording", bool), _field(raw, "consent", bool),
                     note if isinstance(note, str) else None)


def _decode_slots(raw: Any) -> tuple[SlotRole, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_SLOTS:
        raise WireError(f"call signal field 'slots' must be a list of at most {MAX_SLOTS} slot roles")
    try:
        return tuple(SlotRole(s) for s in raw)
    except ValueError:
        raise WireError(f"call signal slots {raw!r}: each must be one of "
                        f"{', '.join(r.value for r in SlotRole)}") from None


def _decode_party(raw: Any) -> Party:
    if (not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not isinstance(raw.get("role"), str)
            or not raw["role"] or len(raw["role"]) > 32):
        raise WireError("a call offer needs 'party': {\"name\": str, \"role\": str (1-32 characters)}")
    return Party(raw["name"][:200], raw["role"])


def _decode_candidate(raw: Any) -> IceCandidate | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("candidate"), str) or len(raw["candidate"]) > 1000:
        raise WireError("call candidate must be {\"candidate\": str, \"sdpMid\": str|null, "
                        "\"sdpMLineIndex\": int|null} or null")
    mid, index = raw.get("sdpMid"), raw.get("sdpMLineIndex")
    if mid is not None and not isinstance(mid, str):
        raise WireError("call candidate 'sdpMid' must be a string or null")
    if index is not None and (not _is_int(index) or index < 0):
        raise WireError("call candidate 'sdpMLineIndex' must be a non-negative integer or null")
    return IceCandidate(raw["candidate"], mid, index)


def _decode_ice_servers(raw: Any) -> tuple[IceServer, ...]:
    if not isinstance(raw, list) or len(raw) > 8:
        raise WireError("call signal field 'ice_servers' must be a list of at most 8 servers")
    servers = []
    for item in raw:
        urls = item.get("urls") if isinstance(item, dict) else None
        if isinstance(urls, str):
            urls = [urls]
        if (not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls)
                or not all(u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns") for u in urls)):
            raise WireError(f"ice server {item!r}: 'urls' must be stun:/turn: URLs")
        username, credential = item.get("username"), item.get("credential")
        if not all(v is None or isinstance(v, str) for v in (username, credential)):
            raise WireError("ice server 'username' and 'credential' must be strings or null")
        servers.append(IceServer(tuple(urls), username, credential))
    return tuple(servers)


# ---- calls: quality -----------------------------------------------------------------------
class StreamDirection(enum.StrEnum):
    OUT = "out"  # the gateway sends it to the participant
    IN = "in"  # the gateway receives it from the participant


@dataclass(frozen=True, slots=True)
class StreamQuality:
    """One media stream of one participant over the last interval. None: not known (yet)."""

    stream: str  # the slot it travels in, e.g. "camera-0", "clinic-audio", "send-video", "party-audio-1"
    kind: str  # "audio" | "video"
    direction: StreamDirection
    rtt_ms: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    fps: float | None = None
    kbps: float | None = None
    tier: str | None = None  # video the gateway sends: "main", "low" or "off" (audio only)
    source: str | None = None  # what it carries: a camera id, or the peer id of another party


@dataclass(frozen=True, slots=True)
class PeerQuality:
    peer_id: str
    name: str
    role: str
    state: str  # the connection's state: new | connecting | connected | disconnected | failed | closed
    local: bool  # a screen on the clinic's LAN, not a remote participant
    streams: tuple[StreamQuality, ...] = ()


@dataclass(frozen=True, slots=True)
class CallQuality:
    consultation_id: str
    time_ms: int
    interval_s: float
    recording: bool
    peers: tuple[PeerQuality, ...] = ()


_QUALITY_FIGURES = ("rtt_ms", "loss_pct", "jitter_ms", "fps", "kbps")


def encode_call_quality(quality: CallQuality) -> bytes:
    def stream(s: StreamQuality) -> dict[str, Any]:
        doc: dict[str, Any] = {"stream": s.stream, "kind": s.kind, "dir": str(s.direction)}
        for name in _QUALITY_FIGURES:
            value = getattr(s, name)
            if value is not None:
                doc[name] = round(value, 2)
        if s.tier is not None:
            doc["tier"] = s.tier
        if s.source is not None:
            doc["source"] = s.source
        return doc

    doc = {"v": PROTOCOL_VERSION, "consultation": quality.consultation_id, "time_ms": quality.time_ms,
           "interval_s": quality.interval_s, "recording": quality.recording,
           "peers": [{"peer": p.peer_id, "name": p.name, "role": p.role, "state": p.state, "local": p.local,
                      "streams": [stream(s) for s in p.streams]} for p in quality.peers]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_call_quality(payload: bytes) -> CallQuality:
    doc = _json_object(payload, "call quality")
    consultation = _field(doc, "consultation", str)
    if not valid_id(consultation):
        raise WireError(f"call quality field 'consultation' = {consultation!r} is not a valid id")
    interval: Any = doc.get("interval_s")
    if not _is_number(interval) or not 0 < interval <= 3600:
        raise WireError(f"call quality field 'interval_s' = {interval!r}; expected seconds (0-3600]")
    recording = _field(doc, "recording", bool)
    peers = []
    for p in _field(doc, "peers", list):
        if not isinstance(p, dict):
            raise WireError("call quality 'peers' must hold objects")
        peer_id = _field(p, "peer", str)
        if not valid_id(peer_id):
            raise WireError(f"call quality peer {peer_id!r} is not a valid id")
        streams = tuple(_decode_stream_quality(s) for s in _field(p, "streams", list))
        peers.append(PeerQuality(peer_id, _field(p, "name", str), _field(p, "role", str), _field(p, "state", str),
                                 _field(p, "local", bool), streams))
    return CallQuality(consultation, _field(doc, "time_ms", int), float(interval), recording, tuple(peers))


def _decode_stream_quality(raw: Any) -> StreamQuality:
    if not isinstance(raw, dict):
        raise WireError("call quality 'streams' must hold objects")
    name = _field(raw, "stream", str)
    kind = _field(raw, "kind", str)
    if kind not in ("audio", "video"):
        raise WireError(f"call quality stream {name!r}: kind {kind!r}; expected 'audio' or 'video'")
    try:
        direction = StreamDirection(_field(raw, "dir", str))
    except ValueError:
        raise WireError(f"call quality stream {name!r}: 'dir' must be 'in' or 'out'") from None
    figures: dict[str, float | None] = {}
    for figure in _QUALITY_FIGURES:
        value: Any = raw.get(figure)
        if value is not None and (not _is_number(value) or value < 0):
            raise WireError(f"call quality stream {name!r}: {figure} = {value!r}; expected a non-negative number")
        figures[figure] = None if value is None else float(value)
    tier, source = raw.get("tier"), raw.get("source")
    if not all(v is None or isinstance(v, str) for v in (tier, source)):
        raise WireError(f"call quality stream {name!r}: 'tier' and 'source' must be strings")
    return StreamQuality(name, kind, direction, tier=tier, source=source, **figures)


# ---- recordings ----------------------------------------------------------------------------
# A finished recording is announced in the outbox's bulk lane; its bytes go up in chunks on their own topic,
# resumable: HQ says how much it holds, the gateway goes on from there, HQ checks the SHA-256 at the end.
RECORDING_CHUNK_VERSION = 1
MAX_RECORDING_CHUNK_BYTES = 1024 * 1024


class RecordingState(enum.StrEnum):
    PARTIAL = "partial"  # HQ holds `received_bytes`; send on from there
    COMPLETE = "complete"  # every byte is at HQ and its SHA-256 matched: the gateway may delete its copy
    CORRUPT = "corrupt"  # the bytes did not match the SHA-256; HQ dropped them: send again from 0
    REFUSED = "refused"  # HQ will not take it (reason says why, e.g. too large); the gateway keeps it


@dataclass(frozen=True, slots=True)
class RecordingOffer:
    """The gateway asks HQ how much of a recording it holds (at every connect, for each waiting recording)."""

    recording_id: str
    consultation_id: str
    clinic_id: str
    started_ms: int
    ended_ms: int
    size_bytes: int
    sha256: str
    mime: str = "video/mp4"
    patient_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingChunk:
    recording_id: str
    offset: int
    size_bytes: int  # of the whole recording, as offered
    data: bytes


@dataclass(frozen=True, slots=True)
class RecordingProgress:
    recording_id: str
    received_bytes: int
    state: RecordingState
    reason: str | None = None


def encode_recording_offer(offer: RecordingOffer) -> bytes:
    doc = {"v": PROTOCOL_VERSION, "type": "offer", "id": offer.recording_id, "consultation": offer.consultation_id,
           "clinic": offer.clinic_id, "started_ms": offer.started_ms, "ended_ms": offer.ended_ms,
           "size": offer.size_bytes, "sha256": offer.sha256, "mime": offer.mime, "patient_id": offer.patient_id}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def encode_recording_chunk(chunk: RecordingChunk) -> bytes:
    header = json.dumps({"id": chunk.recording_id, "offset": chunk.offset, "size": chunk.size_bytes},
                        separators=(",", ":")).encode()
    return bytes([RECORDING_CHUNK_VERSION]) + len(header).to_bytes(2, "big") + header + chunk.data


def decode_recording_up(payload: bytes) -> RecordingOffer | RecordingChunk:
    """An offer (a JSON object) or a chunk (version byte, 2-byte header length, JSON header, the bytes)."""
    if payload[:1] == b"{":
        return _decode_recording_offer(payload)
    if not payload or payload[0] != RECORDING_CHUNK_VERSION:
        raise WireError(f"recording chunk version {payload[:1].hex() or 'missing'}; expected "
                        f"{RECORDING_CHUNK_VERSION:02x} (or a JSON offer)")
    length = int.from_bytes(payload[1:3], "big")
    try:
        header = json.loads(payload[3:3 + length])
    except ValueError as exc:
        raise WireError(f"recording chunk header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise WireError("recording chunk header must be a JSON object")
    recording_id = _recording_id(header)
    offset, size = _field(header, "offset", int), _field(header, "size", int)
    data = payload[3 + length:]
    if len(data) > MAX_RECORDING_CHUNK_BYTES:
        raise WireError(f"recording chunk of {len(data)} bytes; at most {MAX_RECORDING_CHUNK_BYTES}")
    if offset < 0 or offset + len(data) > size:
        raise WireError(f"recording chunk at {offset} (+{len(data)}) lies outside the recording's {size} bytes")
    return RecordingChunk(recording_id, offset, size, data)


def _decode_recording_offer(payload: bytes) -> RecordingOffer:
    doc = _json_object(payload, "recording offer")
    if doc.get("type") != "offer":
        raise WireError(f"recording message type {doc.get('type')!r}; expected 'offer'")
    consultation = _field(doc, "consultation", str)
    if not valid_id(consultation):
        raise WireError(f"recording offer 'consultation' = {consultation!r} is not a valid id")
    sha = _field(doc, "sha256", str)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise WireError("recording offer 'sha256' must be 64 lowercase hex digits")
    size = _field(doc, "size", int)
    if size < 0:
        raise WireError(f"recording offer 'size' = {size}; expected a non-negative number of bytes")
    patient = doc.get("patient_id")
    if patient is not None and not isinstance(patient, str):
        raise WireError("recording offer 'patient_id' must be a string or null")
    return RecordingOffer(_recording_id(doc), consultation, _field(doc, "clinic", str), _field(doc, "started_ms", int),
                          _field(doc, "ended_ms", int), size, sha, _field(doc, "mime", str), patient)


def _recording_id(doc: dict[str, Any]) -> str:
    recording_id = _field(doc, "id", str)
    if not valid_id(recording_id, 100):
        raise WireError(f"recording id {recording_id!r}; expected 1-100 letters, digits, '-', '_' or '.'")
    return str(recording_id)


def encode_recording_progress(progress: RecordingProgress) -> bytes:
    doc = {"v": PROTOCOL_VERSION, "id": progress.recording_id, "received": progress.received_bytes,
           "state": str(progress.state), "reason": progress.reason}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_recording_progress(payload: bytes) -> RecordingProgress:
    doc = _json_object(payload, "recording progress")
    try:
        state = RecordingState(_field(doc, "state", str))
    except ValueError:
        raise WireError(f"recording progress state {doc.get('state')!r}; expected one of "
                        f"{', '.join(s.value for s in RecordingState)}") from None
    received = _field(doc, "received", int)
    if received < 0:
        raise WireError(f"recording progress 'received' = {received}; expected a non-negative offset")
    reason = doc.get("reason")
    return RecordingProgress(_recording_id(doc), received, state, reason if isinstance(reason, str) else None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
