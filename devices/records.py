"""The normalised record every device decoder yields, and the errors decoders report.

Pure data: no I/O, no clock reads. Gateway and HQ both speak in these records.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Kind(enum.StrEnum):
    OBSERVATION = "observation"
    ALARM = "alarm"
    WAVEFORM = "waveform"


class AlarmState(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """What an alarm record carries beyond metric/value: the event, its priority and state.

    `event` is the MDC event reference id (e.g. MDC_EVT_HI) or the vendor's code; `priority`
    is IEC 60601-1-8 style: "high", "medium", "low" or "none".
    """

    event: str
    text: str = ""
    priority: str = "none"
    state: AlarmState = AlarmState.ACTIVE

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "text": self.text, "priority": self.priority, "state": str(self.state)}


@dataclass(frozen=True, slots=True)
class Record:
    """One normalised reading.

    `time` is the source's own time normalised to UTC (timezone-aware). `value` is None only
    for alarms without a numeric value and for waveforms (whose values are in `samples`).
    """

    kind: Kind
    metric: str
    value: float | None
    unit: str | None
    time: datetime
    patient_id: str | None
    device_id: str
    alarm: AlarmInfo | None = None
    samples: tuple[float, ...] = field(default=())
    sample_period_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": str(self.kind),
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "time": format_time(self.time),
            "patient_id": self.patient_id,
            "device_id": self.device_id,
        }
        if self.alarm is not None:
            out["alarm"] = self.alarm.to_json()
        if self.kind is Kind.WAVEFORM:
            out["samples"] = list(self.samples)
            out["sample_period_ms"] = self.sample_period_ms
        return out


class DecodeError(ValueError):
    """A frame (message, line) was rejected; the decoder skipped it and goes on.

    `offset` is the byte offset of the frame in the stream fed so far, `frame` a short excerpt
    of the offending bytes for the operator, `reason` what was wrong and what was expected.
    """

    def __init__(self, reason: str, *, offset: int, frame: bytes = b"", segment: str | None = None) -> None:
        self.reason = reason
        self.offset = offset
        self.frame = frame[:120]
        self.segment = segment
        where = f"byte {offset}" + (f", segment {segment}" if segment else "")
        super().__init__(f"{where}: {reason}")

    def to_json(self) -> dict[str, Any]:
        return {
            "error": self.reason,
            "offset": self.offset,
            "segment": self.segment,
            "frame": self.frame.decode("latin-1"),
        }


@dataclass(slots=True)
class DecodeResult:
    """What one `feed()` call produced: records in stream order, the frames it rejected, and
    bytes to send back to the device (e.g. HL7 ACKs), which the caller writes only after the
    records are durably stored."""

    records: list[Record] = field(default_factory=list)
    errors: list[DecodeError] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)

    def extend(self, other: DecodeResult) -> None:
        self.records.extend(other.records)
        self.errors.extend(other.errors)
        self.replies.extend(other.replies)


def format_time(t: datetime) -> str:
    """UTC ISO 8601 with millisecond precision and a `Z` suffix."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """Inverse of `format_time` (accepts any ISO 8601 with an offset or `Z`)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset; expected ISO 8601 ending in Z or +HH:MM")
    return t.astimezone(UTC)


def finite_number(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
