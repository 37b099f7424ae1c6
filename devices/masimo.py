"""Masimo pulse-oximeter ASCII serial output (Radical-5/-7, Rad-8 "ASCII 1"): decoder and line encoder.

Sans-I/O: lines in, records out; the receive time is passed in for lines without a date.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from devices.records import AlarmInfo, AlarmState, DecodeError, DecodeResult, Kind, Record

SPO2 = "MDC_PULS_OXIM_SAT_O2"
PULSE_RATE = "MDC_PULS_OXIM_PULS_RATE"
PERFUSION_INDEX = "MDC_PULS_OXIM_PERF_REL"

# key -> (MDC metric, UCUM). SpCO, SpMet, PVI, DESAT have no MDC term we could verify, so their
# values are parsed (to validate the line) but not emitted.
_METRICS: dict[str, tuple[str, str]] = {
    "SPO2": (SPO2, "%"),
    "BPM": (PULSE_RATE, "/min"),
    "PI": (PERFUSION_INDEX, "%"),
}
_KNOWN_KEYS = frozenset(
    {*_METRICS, "SPCO", "SPMET", "SPHB", "SPOC", "DESAT", "PIDELTA", "PVI", "SN", "ALARM", "EXC", "EXC1"}
)
_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_HEXWORD = re.compile(r"[0-9A-Fa-f]{1,8}")
_DATE = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{2})")
_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})")

ALARM_ACTIVE_BIT = 0x0010
ALARM_SILENCED_BIT = 0x0020


@dataclass(frozen=True, slots=True)
class AlarmBit:
    """What one bit of the ALARM word means (MD PnP's Radical-7 serial notes)."""

    metric: str
    event: str
    text: str
    priority: str = "medium"


# Bits 0x0010 (alarm active) and 0x0020 (silenced) modify the word; the others name conditions.
ALARM_BITS: dict[int, AlarmBit] = {
    0x0001: AlarmBit(SPO2, "MDC_EVT_HI", "SpO2 high alarm limit violated"),
    0x0002: AlarmBit(SPO2, "MDC_EVT_LO", "SpO2 low alarm limit violated"),
    0x0004: AlarmBit(PULSE_RATE, "MDC_EVT_HI", "pulse rate high alarm limit violated"),
    0x0008: AlarmBit(PULSE_RATE, "MDC_EVT_LO", "pulse rate low alarm limit violated"),
    0x0040: AlarmBit("MASIMO_DEVICE", "MDC_EVT_BATT_LO", "low battery", "low"),
    0x0100: AlarmBit("MASIMO_SPCO", "MDC_EVT_HI", "SpCO high alarm limit violated"),
    0x0200: AlarmBit("MASIMO_SPCO", "MDC_EVT_LO", "SpCO low alarm limit violated"),
    0x0400: AlarmBit("MASIMO_SPMET", "MDC_EVT_HI", "SpMet high alarm limit violated"),
    0x0800: AlarmBit("MASIMO_SPMET", "MDC_EVT_LO", "SpMet low alarm limit violated"),
    0x1000: AlarmBit(SPO2, "MASIMO_DESAT_INDEX", "desaturation index alarm"),
    0x2000: AlarmBit(PERFUSION_INDEX, "MASIMO_PI_DELTA", "PI rate of change alarm"),
}


def alarm_bit(bit: int) -> AlarmBit:
    known = ALARM_BITS.get(bit)
    if known is not None:
        return known
    return AlarmBit("MASIMO_ALARM", f"MASIMO_ALARM_{bit:04X}", f"alarm bits 0x{bit:04X}")


def _conditions(word: int) -> int:
    condition = word & ~(ALARM_ACTIVE_BIT | ALARM_SILENCED_BIT)
    # "Alarm active" with no condition bit still is an alarm; report it as its own condition.
    return condition or (word & ALARM_ACTIVE_BIT)


def _bits(word: int) -> Iterable[int]:
    bit = 1
    while bit <= word:
        if word & bit:
            yield bit
        bit <<= 1


class MasimoDecoder:
    """Decodes Masimo ASCII lines (CR, LF or CRLF ended) into SpO2, pulse rate and PI records.

    Key=value pairs are read anywhere on the line, unknown keys ignored, dashes mean no value.
    Alarms are edge-triggered: a record when an ALARM condition bit appears (active) and when it
    clears (inactive), not one per line.
    """

    def __init__(self, device_id: str, tz: ZoneInfo, *, max_line_bytes: int = 4096) -> None:
        self.device_id = device_id
        self.tz = tz
        self.max_line_bytes = max_line_bytes
        self._buf = b""
        self._base = 0
        self._skipping = False
        self._conditions = 0
        self._values: dict[str, float] = {}

    def feed(self, data: bytes, now: datetime | None = None) -> DecodeResult:
        result = DecodeResult()
        buf = self._buf + data if self._buf else data
        end = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
        if end == -1:
            self._buf = buf
            self._check_oversize(result)
            return result
        complete, self._buf = buf[: end + 1], buf[end + 1 :]
        offset = self._base
        self._base += end + 1
        for line in complete.replace(b"\r", b"\n").split(b"\n"):
            if self._skipping:
                self._skipping = False  # the rest of an oversize line
            elif line:
                self._line(line, offset, now, result)
            offset += len(line) + 1
        self._check_oversize(result)
        return result

    def flush(self, now: datetime | None = None) -> DecodeResult:
        """End of input or idle: decode a last line that had no line end."""
        result = DecodeResult()
        if self._buf and not self._skipping:
            self._line(self._buf, self._base, now, result)
        self._base += len(self._buf)
        self._buf = b""
        self._skipping = False
        return result

    def _check_oversize(self, result: DecodeResult) -> None:
        if len(self._buf) > self.max_line_bytes:
            if not self._skipping:
                result.errors.append(
                    DecodeError(
                        f"line exceeds {self.max_line_bytes} bytes without CR or LF; skipped up to its end",
                        offset=self._base,
                        frame=self._buf,
                    )
                )
            self._skipping = True
            self._base += len(self._buf)
            self._buf = b""

    def _line(self, line: bytes, offset: int, now: datetime | None, result: DecodeResult) -> None:
        if len(line) > self.max_line_bytes:
            result.errors.append(
                DecodeError(
                    f"line of {len(line)} bytes exceeds the {self.max_line_bytes}-byte limit; skipped",
                    offset=offset,
                    frame=line,
                )
            )
            return
        tokens = line.decode("latin-1").split()
        when: datetime | None = None
        start = 0
        date = _DATE.fullmatch(tokens[0]) if len(tokens) >= 2 else None
        clock = _TIME.fullmatch(tokens[1]) if date else None
        if date and clock:
            month, day, year = (int(g) for g in date.groups())
            try:
                # Two-digit years are this century: the format postdates 2000.
                hour, minute, second = (int(g) for g in clock.groups())
                local = datetime(2000 + year, month, day, hour, minute, second)
            except ValueError:
                result.errors.append(
                    DecodeError(
                        f"date/time '{tokens[0]} {tokens[1]}' is invalid; expected MM/DD/YY HH:MM:SS",
                        offset=offset,
                        frame=line,
                    )
                )
                return
            when = local.replace(tzinfo=self.tz).astimezone(UTC)
            start = 2
        fields: dict[str, str] = {}
        for token in tokens[start:]:
            key, sep, value = token.partition("=")
            if sep and key in _KNOWN_KEYS:
                fields[key] = value
        if not fields:
            result.errors.append(
                DecodeError(
                    "line has no recognisable field; expected KEY=value pairs such as SPO2=097% BPM=071",
                    offset=offset,
                    frame=line,
                )
            )
            return
        if when is None:
            if now is None:
                result.errors.append(
                    DecodeError(
                        "line has no date/time and no receive time was given; expected MM/DD/YY HH:MM:SS",
                        offset=offset,
                        frame=line,
                    )
                )
                return
            when = now.astimezone(UTC)
        values: dict[str, float] = {}
        for key, (metric, unit) in _METRICS.items():
            raw = fields.get(key)
            if raw is None:
                continue
            text = raw.rstrip("%")
            if "-" in text[1:] or text in ("-", ""):
                continue  # dashes: the device has no value for this parameter now
            if not _NUMBER.fullmatch(text):
                result.errors.append(
                    DecodeError(
                        f"{key} value {raw!r} is not a number; expected digits like 097 or 04.80",
                        offset=offset,
                        frame=line,
                    )
                )
                continue
            number = float(text)
            values[metric] = number
            result.records.append(Record(Kind.OBSERVATION, metric, number, unit, when, None, self.device_id))
        alarm = fields.get("ALARM")
        if alarm is not None:
            if not _HEXWORD.fullmatch(alarm):
                result.errors.append(
                    DecodeError(
                        f"ALARM value {alarm!r} is not a hex word; expected e.g. ALARM=0000",
                        offset=offset,
                        frame=line,
                    )
                )
            else:
                self._alarm(int(alarm, 16), values, when, result)

    def _alarm(self, word: int, values: dict[str, float], when: datetime, result: DecodeResult) -> None:
        conditions = _conditions(word)
        previous = self._conditions
        if conditions == previous:
            return
        self._conditions = conditions
        for bit in _bits(previous & ~conditions):
            result.records.append(self._alarm_record(bit, AlarmState.INACTIVE, values, when))
        for bit in _bits(conditions & ~previous):
            result.records.append(self._alarm_record(bit, AlarmState.ACTIVE, values, when))

    def _alarm_record(self, bit: int, state: AlarmState, values: dict[str, float], when: datetime) -> Record:
        meaning = alarm_bit(bit)
        unit = _METRIC_UNITS.get(meaning.metric)
        value = values.get(meaning.metric)
        return Record(
            Kind.ALARM,
            meaning.metric,
            value,
            unit if value is not None else None,
            when,
            None,
            self.device_id,
            alarm=AlarmInfo(meaning.event, meaning.text, meaning.priority, state),
        )


_METRIC_UNITS = {metric: unit for metric, unit in _METRICS.values()}


class MasimoVariant(enum.StrEnum):
    """Line layouts seen from different models and firmware."""

    RADICAL7 = "radical7"  # date, SN, SpO2, BPM, PI, SpCO, SpMet, DESAT, PIDELTA, PVI, ALARM, EXC
    RADICAL5 = "radical5"  # date, SpO2, BPM, PI, ALARM, EXC
    RAD8 = "rad8"  # date, SN, SpO2, BPM, PI, ALARM, EXC, EXC1
    NO_DATE = "nodate"  # Radical-7 fields without the leading date and time


def encode_line(
    time: datetime,
    tz: ZoneInfo,
    *,
    spo2: float | None,
    bpm: float | None,
    pi: float | None,
    alarm: int = 0,
    variant: MasimoVariant = MasimoVariant.RADICAL7,
    serial_number: str = "0000012345",
    line_end: bytes = b"\r\n",
) -> bytes:
    """One Masimo ASCII line; SpO2 and BPM are sent as integers, PI with two decimals."""
    spo2_text = "---" if spo2 is None else f"{round(spo2):03d}"
    bpm_text = "---" if bpm is None else f"{round(bpm):03d}"
    pi_text = "--.--" if pi is None else f"{pi:05.2f}"
    stamp = time.astimezone(tz).strftime("%m/%d/%y %H:%M:%S")
    core = f"SPO2={spo2_text}% BPM={bpm_text} PI={pi_text}%"
    if variant is MasimoVariant.RADICAL5:
        text = f"{stamp} {core} ALARM={alarm:04X} EXC=000000"
    elif variant is MasimoVariant.RAD8:
        text = f"{stamp} SN={serial_number} {core} ALARM={alarm:04X} EXC=000000 EXC1=000000"
    else:
        text = (
            f"SN={serial_number} {core} SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- PVI=--- "
            f"ALARM={alarm:04X} EXC=000000"
        )
        if variant is MasimoVariant.RADICAL7:
            text = f"{stamp} {text}"
    return text.encode("ascii") + line_end
