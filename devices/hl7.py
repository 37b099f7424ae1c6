"""IHE PCD-01 (ORU^R01 observations) and PCD-04 (ORU^R40 alarms) decoder over MLLP or bare HL7 v2.

Sans-I/O: fed bytes and the receive time, it returns records, errors and ACKs to send; it never
reads a clock or touches a port. Encoders (for the simulator) live in `devices.hl7_encoder`.

Choices where the profile leaves room:
- `device_id` of every record is the decoder's configured id; OBX-18 equipment ids are ignored,
  so a record's source is always the port or connection the gateway configured.
- OBX-3 names the metric: the MDC reference id when given, else the numeric code mapped through
  `devices.codes`, else the identifier kept as sent ("code^text^system", trailing empties dropped).
- OBX-6 units become UCUM via `devices.codes`; an unrecognised unit is kept as sent.
- A waveform's sample period may follow its NA OBX as an NM OBX coded MDC_ATTR_TIME_PD_SAMP.
- A message is ACKed AA when it was processed, even if single OBX were rejected (those are
  reported as errors); AE when it was rejected as a whole; AR for unsupported message types;
  nothing when the MSH itself is unreadable (there is no control id to acknowledge).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from devices import codes
from devices.hl7_bare import BareHl7Framer
from devices.hl7_message import (
    Delimiters,
    Hl7SyntaxError,
    Segment,
    escape,
    parse_delimiters,
    parse_dtm,
    split_segments,
    unescape,
)
from devices.mllp import Frame, MllpFramer, frame
from devices.records import AlarmInfo, AlarmState, DecodeError, DecodeResult, Kind, Record

_NM = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DETECT_LIMIT = 4096
_CACHE_LIMIT = 4096
_DELIMITER_SETS_LIMIT = 8
_PRIORITIES = {"PH": "high", "PM": "medium", "PL": "low", "PN": "none", "PI": "none"}
_INACTIVE_STATES = frozenset({"inactive", "off"})
_INACTIVE_PHASES = frozenset({"end"})


class _Rejected(Exception):
    """The whole message is rejected: (reason, HL7 error code, ACK code, segment)."""

    def __init__(self, reason: str, code: str, ack: str, segment: str | None = "MSH") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.ack = ack
        self.segment = segment


def parse_nm(text: str) -> float | None:
    """An HL7 NM value as a float, or None when it is not one (HL7 NM has no exponent or inf)."""
    text = text.strip()
    if not _NM.fullmatch(text):
        return None
    return float(text)


class Hl7Decoder:
    """Decodes a stream of HL7 v2 PCD-01/PCD-04 messages into records and ACKs.

    The framing is detected from the first bytes: a VT before the first "MSH" means MLLP,
    otherwise messages are bare (segments ended by CR, LF or CRLF; a message ends at the next
    MSH, a blank line, or `flush()`). ACKs go out in the same framing.
    """

    def __init__(
        self,
        device_id: str,
        tz: ZoneInfo,
        *,
        max_message_bytes: int = 1 << 20,
        receiving_app: str = "CLINIC-GW",
        receiving_facility: str = "",
        acks: bool = True,
    ) -> None:
        self.device_id = device_id
        self.acks = acks  # build ACK replies; off for a serial device nobody answers
        self.tz = tz
        self.max_message_bytes = max_message_bytes
        self.receiving_app = receiving_app
        self.receiving_facility = receiving_facility
        self._framer: MllpFramer | BareHl7Framer | None = None
        self._pending = bytearray()
        self._pending_base = 0
        self._offset_shift = 0  # stream offset of the framer's first byte
        self._framer_fed = 0  # bytes given to the current framer
        self._garbage_reported = False
        # Identifier and unit fields repeat in every message: memoise their lookups (bounded).
        # Identifier and unit mappings per delimiter set (almost always one): raw field -> result.
        self.metric_caches: dict[Delimiters, dict[str, str | None]] = {}
        self.unit_caches: dict[Delimiters, dict[str, str | None]] = {}

    @property
    def framing(self) -> str | None:
        """ "mllp", "bare", or None while undecided."""
        if self._framer is None:
            return None
        return "mllp" if isinstance(self._framer, MllpFramer) else "bare"

    def feed(self, data: bytes, now: datetime | None = None) -> DecodeResult:
        """Decode the next bytes; `now` (receive time) is used only for messages without MSH-7."""
        result = DecodeResult()
        if self._framer is None:
            data = self._detect(data, result)
            if self._framer is None:
                return result
        vt = data.find(b"\x0b") if isinstance(self._framer, BareHl7Framer) else -1
        if vt != -1:
            # A VT never occurs in bare HL7 text: the stream is MLLP after all (the "MSH" that made us
            # pick bare framing was noise). Finish the bare part and frame the rest as MLLP.
            self._feed_framer(data[:vt], now, result)
            for item in self._framer.flush():
                self._handle(item, now, result)
            self._offset_shift += self._framer_fed
            self._framer = MllpFramer(self.max_message_bytes)
            self._framer_fed = 0
            data = data[vt:]
        self._feed_framer(data, now, result)
        return result

    def _feed_framer(self, data: bytes, now: datetime | None, result: DecodeResult) -> None:
        assert self._framer is not None
        self._framer_fed += len(data)
        for item in self._framer.feed(data):
            self._handle(item, now, result)

    def flush(self, now: datetime | None = None) -> DecodeResult:
        """End of input or idle line: emit a pending bare message, report an unfinished frame."""
        result = DecodeResult()
        if self._framer is None:
            if self._pending.strip() and not self._garbage_reported:
                result.errors.append(_garbage_error(bytes(self._pending), self._pending_base))
            self._pending_base += len(self._pending)
            self._pending.clear()
            return result
        for item in self._framer.flush():
            self._handle(item, now, result)
        return result

    def _detect(self, data: bytes, result: DecodeResult) -> bytes:
        self._pending += data
        buf = self._pending
        vt = buf.find(b"\x0b")
        msh = buf.find(b"MSH")
        if vt != -1 and (msh == -1 or vt < msh):
            self._framer = MllpFramer(self.max_message_bytes)
        elif msh != -1:
            self._framer = BareHl7Framer(self.max_message_bytes)
        else:
            if len(buf) > _DETECT_LIMIT:
                if not self._garbage_reported and buf.strip():
                    result.errors.append(_garbage_error(bytes(buf), self._pending_base))
                    self._garbage_reported = True
                self._pending_base += len(buf) - 2
                del buf[:-2]
            return b""
        # The framer counts offsets from its first byte, so hand it the whole pending stream.
        self._offset_shift = self._pending_base
        pending = bytes(buf)
        buf.clear()
        return pending

    def _handle(self, item: Frame | DecodeError, now: datetime | None, result: DecodeResult) -> None:
        shift = self._offset_shift
        if isinstance(item, DecodeError):
            if shift:
                item = DecodeError(item.reason, offset=item.offset + shift, frame=item.frame, segment=item.segment)
            result.errors.append(item)
            return
        mllp = isinstance(self._framer, MllpFramer)
        payload_offset = item.offset + shift + (1 if mllp else 0)
        _MessageDecoder(self, item.payload, payload_offset, now, mllp, result).run()


def _garbage_error(chunk: bytes, offset: int) -> DecodeError:
    return DecodeError(
        "no HL7 message found; expected MLLP (VT ... FS CR) or a message starting with MSH",
        offset=offset,
        frame=chunk,
    )


class _Alarm:
    """What the OBX segments of one PCD-04 alarm group have said so far."""

    __slots__ = ("event", "metric", "phase", "priority", "state", "text", "time", "unit", "value")

    def __init__(self, event: str, time: datetime) -> None:
        self.event = event
        self.time = time
        self.metric: str | None = None
        self.value: float | None = None
        self.unit: str | None = None
        self.text = ""
        self.priority: str | None = None
        self.phase = ""
        self.state = ""


class _MessageDecoder:
    """Turns one message payload into records, errors and its ACK (appended to `result`)."""

    def __init__(
        self,
        decoder: Hl7Decoder,
        payload: bytes,
        offset: int,
        now: datetime | None,
        mllp: bool,
        result: DecodeResult,
    ) -> None:
        self.decoder = decoder
        self.payload = payload
        self.offset = offset
        self.now = now
        self.mllp = mllp
        self.result = result
        self.records: list[Record] = []
        self.errors: list[DecodeError] = []
        self._times: dict[str, datetime | None] = {}
        self._component = "^"
        self._metric_cache: dict[str, str | None] = {}
        self._unit_cache: dict[str, str | None] = {}

    def run(self) -> None:
        try:
            text = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            text = self.payload.decode("latin-1")
        segments = split_segments(text)
        if not segments or not segments[0][1].startswith("MSH"):
            first = segments[0][1][:3] if segments else ""
            self._error(f"message starts with {first!r}; expected an MSH segment", 0, first or None)
            self.result.errors.extend(self.errors)
            return
        try:
            delims = parse_delimiters(segments[0][1])
        except Hl7SyntaxError as exc:
            self._error(str(exc), 0, "MSH")
            self.result.errors.extend(self.errors)
            return
        msh = Segment(segments[0][1], delims)
        if msh.component(9, 1) == "ACK":
            return  # never acknowledge an acknowledgement
        try:
            self._decode(msh, segments, delims)
        except _Rejected as exc:
            self.records.clear()
            self._error(exc.reason, 0, exc.segment)
            self.result.errors.extend(self.errors)
            if self.decoder.acks:
                self.result.replies.append(self._ack(msh, delims, exc.ack, exc))
            return
        self.result.records.extend(self.records)
        self.result.errors.extend(self.errors)
        if self.decoder.acks:
            self.result.replies.append(self._ack(msh, delims, "AA", None))

    def _error(self, reason: str, char_offset: int, segment: str | None) -> None:
        self.errors.append(DecodeError(reason, offset=self.offset + char_offset, frame=self.payload, segment=segment))

    def _time(self, raw: str, field: str, char_offset: int, segment: str) -> datetime | None:
        """Parse a DTM field (first component); report and return None when invalid."""
        if raw in self._times:
            return self._times[raw]
        text = raw.split(self._component, 1)[0]
        if not text:
            return None
        try:
            t = parse_dtm(text, self.decoder.tz).astimezone(UTC)
        except ValueError as exc:
            self._error(
                f"{field} {text!r} is not an HL7 DTM ({exc}); expected YYYYMMDDHHMMSS[.SSSS][+/-ZZZZ]",
                char_offset,
                segment,
            )
            t = None
        self._times[raw] = t
        return t

    def _decode(self, msh: Segment, segments: list[tuple[int, str]], delims: Delimiters) -> None:
        self._component = delims.component
        if len(self.decoder.metric_caches) > _DELIMITER_SETS_LIMIT:
            self.decoder.metric_caches.clear()
            self.decoder.unit_caches.clear()
        self._metric_cache = self.decoder.metric_caches.setdefault(delims, {})
        self._unit_cache = self.decoder.unit_caches.setdefault(delims, {})
        kind = (msh.component(9, 1), msh.component(9, 2))
        if kind not in (("ORU", "R01"), ("ORU", "R40")):
            raise _Rejected(
                f"message type {'^'.join(kind)!r} is not supported; expected ORU^R01 (PCD-01) or ORU^R40 (PCD-04)",
                "200",
                "AR",
            )
        msh_time = None
        msh7 = msh.component(7, 1)
        if msh7:
            try:
                msh_time = parse_dtm(msh7, self.decoder.tz)
            except ValueError:
                msh_time = None
        if msh_time is not None:
            # OBX-14 usually repeats MSH-7: let it hit the per-message time cache.
            self._times.setdefault(msh7, msh_time.astimezone(UTC))
        base = msh_time or self.now
        if base is None:
            raise _Rejected(
                f"MSH-7 {msh7!r} is missing or not an HL7 DTM and no receive time was given; "
                "expected YYYYMMDDHHMMSS[+/-ZZZZ]",
                "101",
                "AE",
            )
        if base.tzinfo is None:
            base = base.replace(tzinfo=self.decoder.tz)
        base = base.astimezone(UTC)
        alarms = kind[1] == "R40"
        patient: str | None = None
        obr_time: datetime | None = None
        group: _Alarm | None = None
        waveform: Record | None = None
        fsep = delims.field
        for char_offset, text in segments[1:]:
            name = text[:3]
            if name == "OBX":
                fields = text.split(fsep)
                if len(fields) > 11 and fields[11] == "X":
                    continue
                if alarms:
                    group = self._alarm_obx(fields, char_offset, delims, group, obr_time or base, patient)
                else:
                    waveform = self._observation_obx(fields, char_offset, delims, obr_time or base, patient, waveform)
            elif name == "PID":
                pid = Segment(text, delims)
                patient = pid.component(3, 1) or None
            elif name == "OBR":
                if group is not None:
                    self._finish_alarm(group, patient)
                    group = None
                obr = Segment(text, delims)
                obr_time = self._time(obr[7], "OBR-7", char_offset, "OBR") if obr[7] else None
        if waveform is not None:
            self.records.append(waveform)
        if group is not None:
            self._finish_alarm(group, patient)

    def _identifier(self, raw: str, d: Delimiters) -> tuple[str, str, str]:
        parts = raw.split(d.component)
        parts += ["", ""]
        return unescape(parts[0], d), unescape(parts[1], d), unescape(parts[2], d)

    def _metric(self, raw: str, d: Delimiters) -> str | None:
        cache = self._metric_cache
        key = raw
        if key in cache:
            return cache[key]
        code, ref, system = self._identifier(raw, d)
        metric = codes.metric_for(code, ref)
        if metric is None:
            kept = [code, ref, system]
            while kept and not kept[-1]:
                kept.pop()
            metric = "^".join(kept) or None
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = metric
        return metric

    def _unit(self, raw: str, d: Delimiters) -> str | None:
        if not raw:
            return None
        cache = self._unit_cache
        key = raw
        if key in cache:
            return cache[key]
        comps = [unescape(c, d) for c in raw.split(d.component)]
        unit = codes.ucum_for(comps) or comps[0] or (comps[1] if len(comps) > 1 else None) or None
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = unit
        return unit

    def _observation_obx(
        self,
        fields: list[str],
        char_offset: int,
        d: Delimiters,
        fallback_time: datetime,
        patient: str | None,
        waveform: Record | None,
    ) -> Record | None:
        """Handle one PCD-01 OBX; returns the waveform still open for a sample-period OBX."""
        fields += [""] * (15 - len(fields))
        vtype = fields[2]
        if vtype not in ("NM", "NA"):
            return waveform
        metric = self._metric(fields[3], d)
        if metric is None:
            self._error(
                "OBX-3 is empty; expected an observation identifier such as 150456^MDC_PULS_OXIM_SAT_O2^MDC",
                char_offset,
                "OBX",
            )
            return waveform
        raw_time = fields[14]
        when = self._time(raw_time, "OBX-14", char_offset, "OBX") if raw_time else fallback_time
        if when is None:
            return waveform
        value_raw = fields[5]
        if vtype == "NM":
            if metric == "MDC_ATTR_TIME_PD_SAMP" and waveform is not None:
                period = parse_nm(unescape(value_raw, d))
                if period is not None:
                    scale = 1000.0 if self._unit(fields[6], d) == "s" else 1.0
                    self.records.append(_with_period(waveform, period * scale))
                    return None
            if waveform is not None:
                self.records.append(waveform)
                waveform = None
            value_text = unescape(value_raw, d)
            if not value_text.strip():
                self._error(f"OBX-5 of {metric} is empty; expected an NM value", char_offset, "OBX")
                return None
            value = parse_nm(value_text)
            if value is None:
                self._error(f"OBX-5 {value_text!r} of {metric} is not a number; expected NM value", char_offset, "OBX")
                return None
            self.records.append(
                Record(
                    Kind.OBSERVATION,
                    metric,
                    value,
                    self._unit(fields[6], d),
                    when,
                    patient,
                    self.decoder.device_id,
                )
            )
            return None
        if waveform is not None:
            self.records.append(waveform)
        samples: list[float] = []
        for rep in value_raw.split(d.repetition):
            for comp in rep.split(d.component):
                sample = parse_nm(unescape(comp, d))
                if sample is None:
                    self._error(
                        f"OBX-5 sample {comp!r} of {metric} is not a number; expected NA of NM values",
                        char_offset,
                        "OBX",
                    )
                    return None
                samples.append(sample)
        if not value_raw:
            self._error(f"OBX-5 of {metric} is empty; expected an NA value", char_offset, "OBX")
            return None
        return Record(
            Kind.WAVEFORM,
            metric,
            None,
            self._unit(fields[6], d),
            when,
            patient,
            self.decoder.device_id,
            samples=tuple(samples),
        )

    def _alarm_obx(
        self,
        fields: list[str],
        char_offset: int,
        d: Delimiters,
        group: _Alarm | None,
        fallback_time: datetime,
        patient: str | None,
    ) -> _Alarm | None:
        fields += [""] * (15 - len(fields))
        code, ref, _system = self._identifier(fields[3], d)
        when: datetime | None = None
        if fields[14]:
            when = self._time(fields[14], "OBX-14", char_offset, "OBX")
        if codes.is_event(code, ref):
            if group is not None:
                self._finish_alarm(group, patient)
            event = codes.metric_for(code, ref) or ref or code
            group = _Alarm(event, when or fallback_time)
            vtype = fields[2]
            v_code, v_ref, _ = self._identifier(fields[5], d)
            if vtype in ("CWE", "CE", "CNE") and codes.is_event(v_code, v_ref):
                if event == "MDC_EVT_ALARM":
                    group.event = codes.metric_for(v_code, v_ref) or v_ref or v_code
            elif vtype in ("CWE", "CE", "CNE"):
                group.metric = codes.metric_for(v_code, v_ref) or v_ref or v_code or None
            else:
                group.text = unescape(fields[5], d)
            self._interpretation(group, fields[8], d)
            return group
        if group is None:
            return None
        attribute = codes.attribute_code(code, ref)
        value = unescape(fields[5], d)
        if attribute == codes.ATTR_EVENT_PHASE:
            group.phase = value.strip().lower()
        elif attribute == codes.ATTR_ALARM_STATE:
            group.state = value.strip().lower()
        elif attribute == codes.ATTR_ALARM_PRIORITY:
            group.priority = _PRIORITIES.get(value.strip().upper(), group.priority)
        elif attribute == codes.ATTR_ALERT_TEXT:
            group.text = value
        elif attribute == codes.ATTR_ALERT_SOURCE:
            if group.metric is None and value:
                s_code, s_ref, _ = self._identifier(fields[5], d)
                group.metric = codes.metric_for(s_code, s_ref) or s_ref or s_code or None
        elif attribute is None and group.value is None:
            metric = self._metric(fields[3], d)
            if metric is not None:
                group.metric = metric
            if fields[6]:
                group.unit = self._unit(fields[6], d)
            if fields[2] == "NM" and value.strip():
                number = parse_nm(value)
                if number is None:
                    self._error(
                        f"OBX-5 {value!r} of alarm source {metric} is not a number; expected NM value",
                        char_offset,
                        "OBX",
                    )
                else:
                    group.value = number
            self._interpretation(group, fields[8], d)
        return group

    def _interpretation(self, group: _Alarm, raw: str, d: Delimiters) -> None:
        for code in raw.split(d.repetition):
            priority = _PRIORITIES.get(code.strip().upper())
            if priority is not None:
                group.priority = priority

    def _finish_alarm(self, group: _Alarm, patient: str | None) -> None:
        inactive = group.phase in _INACTIVE_PHASES or group.state in _INACTIVE_STATES
        info = AlarmInfo(
            event=group.event,
            text=group.text,
            priority=group.priority or "none",
            state=AlarmState.INACTIVE if inactive else AlarmState.ACTIVE,
        )
        metric = group.metric or group.event
        self.records.append(
            Record(
                Kind.ALARM,
                metric,
                group.value,
                group.unit,
                group.time,
                patient,
                self.decoder.device_id,
                alarm=info,
            )
        )

    def _ack(self, msh: Segment, d: Delimiters, code: str, rejected: _Rejected | None) -> bytes:
        f = d.field
        control = msh[10]
        when = msh[7].split(d.component, 1)[0]
        if self.now is not None:
            when = self.now.strftime("%Y%m%d%H%M%S") + (self.now.strftime("%z") or "")
        trigger = msh.component(9, 2)
        fields = [
            "MSH",
            d.encoding_characters,
            msh[5] or escape(self.decoder.receiving_app, d),
            msh[6] or escape(self.decoder.receiving_facility, d),
            msh[3],
            msh[4],
            when,
            "",
            f"ACK{d.component}{trigger}{d.component}ACK",
            control,
            msh[11] or "P",
            msh[12] or "2.6",
        ]
        segments = [f.join(fields), f.join(["MSA", code, control])]
        if rejected is not None:
            text = f"{rejected.code}{d.component}{_ERROR_TEXT.get(rejected.code, 'Error')}{d.component}HL70357"
            location = f"{rejected.segment or 'MSH'}{d.component}1"
            segments.append(f.join(["ERR", "", location, text, "E", "", "", "", escape(rejected.reason, d)]))
        body = ("\r".join(segments) + "\r").encode("utf-8")
        return frame(body) if self.mllp else body


_ERROR_TEXT = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "200": "Unsupported message type",
    "207": "Application internal error",
}


def _with_period(waveform: Record, period_ms: float) -> Record:
    return Record(
        waveform.kind,
        waveform.metric,
        waveform.value,
        waveform.unit,
        waveform.time,
        waveform.patient_id,
        waveform.device_id,
        samples=waveform.samples,
        sample_period_ms=period_ms,
    )
