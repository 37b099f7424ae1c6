"""Builds IHE PCD-01 (ORU^R01) and PCD-04 (ORU^R40) messages from records, for the simulators.

The inverse of `devices.hl7`: decode(encode(records)) == records for millisecond-precision times.
Returns bare messages (segments ended by `segment_end`); MLLP framing is `devices.mllp.frame`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from devices import codes
from devices.hl7_message import DEFAULT_DELIMITERS, Delimiters, escape, format_dtm
from devices.records import AlarmState, Kind, Record

_PRIORITY_CODES = {"high": "PH", "medium": "PM", "low": "PL", "none": "PN"}


def format_nm(value: float) -> str:
    """A float as an HL7 NM (plain decimal, no exponent) that parses back to the same float."""
    text = format(Decimal(repr(float(value))), "f")
    return text


def _identifier(metric: str, d: Delimiters, lookup: dict[str, int | None]) -> str:
    if metric.startswith("MDC"):
        code = lookup.get(metric)
        return f"{code if code is not None else ''}{d.component}{metric}{d.component}MDC"
    return d.component.join(escape(part, d) for part in metric.split("^"))


def _metric_id(metric: str, d: Delimiters) -> str:
    return _identifier(metric, d, {metric: codes.metric_code(metric)})


def _event_id(event: str, d: Delimiters) -> str:
    return _identifier(event, d, {event: codes.event_code(event)})


def _unit(unit: str | None, d: Delimiters) -> str:
    if unit is None:
        return ""
    mdc = codes.mdc_unit_for(unit)
    if mdc is not None:
        code, ref = mdc
        return f"{code}{d.component}{ref}{d.component}MDC"
    u = escape(unit, d)
    return f"{u}{d.component}{u}{d.component}UCUM"


def _header(
    message_type: str,
    control_id: str,
    when: datetime,
    patient_id: str | None,
    sending_app: str,
    sending_facility: str,
    receiving_app: str,
    receiving_facility: str,
    profile: str,
    d: Delimiters,
) -> list[str]:
    f = d.field
    msh = f.join(
        [
            "MSH",
            d.encoding_characters,
            escape(sending_app, d),
            escape(sending_facility, d),
            escape(receiving_app, d),
            escape(receiving_facility, d),
            format_dtm(when),
            "",
            message_type,
            escape(control_id, d),
            "P",
            "2.6",
            "",
            "",
            "AL",
            "NE",
            "",
            "UNICODE UTF-8",
            "",
            "",
            profile,
        ]
    )
    pid = f.join(["PID", "", "", escape(patient_id, d) if patient_id else ""])
    return [msh, pid]


def _patient(records: Sequence[Record]) -> str | None:
    patients = {r.patient_id for r in records}
    if len(patients) > 1:
        raise ValueError(f"records belong to {len(patients)} patients; expected one patient per message")
    return next(iter(patients), None)


def _obx(
    d: Delimiters,
    set_id: int,
    value_type: str,
    identifier: str,
    sub_id: str,
    value: str,
    unit: str = "",
    *,
    abnormal: str = "",
    time: str = "",
) -> str:
    """One OBX segment with final status (OBX-11 'F'); trailing empty fields are left off."""
    fields = ["OBX", str(set_id), value_type, identifier, sub_id, value, unit, "", abnormal, "", "", "F",
              "", "", time]
    while not fields[-1]:
        fields.pop()
    return d.field.join(fields)


def encode_oru_r01(
    records: Sequence[Record],
    *,
    control_id: str,
    message_time: datetime | None = None,
    sending_app: str = "CLINIC-SIM",
    sending_facility: str = "",
    receiving_app: str = "CLINIC-GW",
    receiving_facility: str = "",
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    segment_end: str = "\r",
) -> bytes:
    """A PCD-01 ORU^R01 carrying observation and waveform records (one patient per message).

    OBX-14 carries each record's time in UTC with millisecond precision; MSH-7 and OBR-7 carry
    `message_time` (default: the first record's time).
    """
    if not records:
        raise ValueError("no records to encode; expected at least one observation")
    d = delimiters
    f = d.field
    when = message_time or records[0].time
    segments = _header(
        f"ORU{d.component}R01{d.component}ORU_R01",
        control_id,
        when,
        _patient(records),
        sending_app,
        sending_facility,
        receiving_app,
        receiving_facility,
        f"IHE_PCD_001{d.component}IHE PCD{d.component}1.3.6.1.4.1.19376.1.6.1.1.1{d.component}ISO",
        d,
    )
    segments.append(
        f.join(
            [
                "OBR",
                "1",
                "",
                escape(control_id, d),
                f"182777000{d.component}monitoring of patient{d.component}SNOMED-CT",
                "",
                "",
                format_dtm(when),
            ]
        )
    )
    n = 0
    for r in records:
        n += 1
        time = format_dtm(r.time)
        if r.kind is Kind.OBSERVATION:
            if r.value is None:
                raise ValueError(f"observation {r.metric} has no value; expected a number")
            segments.append(
                _obx(d, n, "NM", _metric_id(r.metric, d), f"1.1.1.{n}", format_nm(r.value), _unit(r.unit, d),
                     time=time)
            )
        elif r.kind is Kind.WAVEFORM:
            samples = d.component.join(format_nm(s) for s in r.samples)
            segments.append(
                _obx(d, n, "NA", _metric_id(r.metric, d), f"1.1.1.{n}", samples, _unit(r.unit, d), time=time)
            )
            if r.sample_period_ms is not None:
                n += 1
                segments.append(
                    _obx(d, n, "NM", _metric_id("MDC_ATTR_TIME_PD_SAMP", d), f"1.1.1.{n}",
                         format_nm(r.sample_period_ms), _unit("ms", d), time=time)
                )
        else:
            raise ValueError(f"record kind {r.kind} does not belong in ORU^R01; use encode_oru_r40 for alarms")
    return (segment_end.join(segments) + segment_end).encode("utf-8")


def encode_oru_r40(
    records: Sequence[Record],
    *,
    control_id: str,
    message_time: datetime | None = None,
    sending_app: str = "CLINIC-SIM",
    sending_facility: str = "",
    receiving_app: str = "CLINIC-GW",
    receiving_facility: str = "",
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    segment_end: str = "\r",
) -> bytes:
    """A PCD-04 ORU^R40 with one alarm group (OBR + event, source, phase, state, inactivation
    state and priority OBX) per alarm record."""
    if not records:
        raise ValueError("no alarms to encode; expected at least one alarm record")
    d = delimiters
    f = d.field
    c = d.component
    when = message_time or records[0].time
    segments = _header(
        f"ORU{c}R40{c}ORU_R40",
        control_id,
        when,
        _patient(records),
        sending_app,
        sending_facility,
        receiving_app,
        receiving_facility,
        f"IHE_PCD_ACM_001{c}IHE PCD{c}1.3.6.1.4.1.19376.1.6.4.4{c}ISO",
        d,
    )
    for i, r in enumerate(records, start=1):
        if r.kind is not Kind.ALARM or r.alarm is None:
            raise ValueError(f"record {r.metric} is a {r.kind}; expected alarm records with AlarmInfo")
        a = r.alarm
        if not codes.is_event(None, a.event):
            raise ValueError(f"alarm event {a.event!r} is not an MDC event; PCD-04 expects MDC_EVT_* ids")
        time = format_dtm(r.time)
        sub = f"1.1.{i}.0"
        active = a.state is AlarmState.ACTIVE
        priority = _PRIORITY_CODES.get(a.priority, "PN")
        segments.append(
            f.join(["OBR", str(i), "", escape(f"{control_id}-{i}", d), _event_id(a.event, d), "", "", time])
        )
        segments.append(
            _obx(d, 1, "ST", _event_id(a.event, d), f"{sub}.1", escape(a.text, d),
                 abnormal=f"{priority}{d.repetition}SP", time=time)
        )
        value = format_nm(r.value) if r.value is not None else ""
        segments.append(_obx(d, 2, "NM" if value else "", _metric_id(r.metric, d), f"{sub}.2", value, _unit(r.unit, d)))
        attributes = (
            ("68481", "MDC_ATTR_EVENT_PHASE", "start" if active else "end"),
            ("68482", "MDC_ATTR_ALARM_STATE", "active" if active else "inactive"),
            ("68483", "MDC_ATTR_ALARM_INACTIVATION_STATE", "enabled"),
            ("68484", "MDC_ATTR_ALARM_PRIORITY", priority),
        )
        for set_id, (code, ref, text) in enumerate(attributes, start=3):
            segments.append(_obx(d, set_id, "ST", f"{code}{c}{ref}{c}MDC", f"{sub}.{set_id}", text))
    return (segment_end.join(segments) + segment_end).encode("utf-8")
